"""Content model: a per-user taste profile over item categories and tags (from the `items`
topic), and the candidates it implies — including items added to the catalogue a moment ago.

The profile lives in the user's state (`UserState.taste`), so it is stored, restored and
forgotten with the user. Keys: the category name, and `#tag` for tags.
"""
from __future__ import annotations

from typing import Iterable

from online_models.catalog import Catalog
from online_models.events import Interaction
from online_models.state.user_state import UserState

TASTE_DECAY = 0.9   # each new signal counts a little more than the old ones
MAX_TASTE = 24      # keys kept per user


class ContentModel:
    name = "content"

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def learn_one(self, ev: Interaction, user: UserState) -> None:
        self.catalog.observe(ev.ts)  # dates catalogue additions from now on as new
        item = self.catalog.get(ev.item_id)
        if item is None or (item.category is None and not item.tags):
            return
        taste = user.taste
        for key in taste:
            taste[key] *= TASTE_DECAY
        w = ev.weight  # negative for skips and dislikes
        if item.category:
            taste[item.category] = taste.get(item.category, 0.0) + w
        for tag in item.tags:
            key = "#" + tag
            taste[key] = taste.get(key, 0.0) + 0.5 * w
        if len(taste) > MAX_TASTE:
            keep = sorted(taste.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:MAX_TASTE]
            user.taste = dict(sorted(keep, key=lambda kv: list(taste).index(kv[0])))

    # -- reading --------------------------------------------------------------------------
    def liked_categories(self, user: UserState, n: int = 2) -> list[str]:
        cats = [(v, k) for k, v in user.taste.items() if v > 0 and not k.startswith("#")]
        cats.sort(key=lambda vk: (-vk[0], vk[1]))
        return [k for _, k in cats[:n]]

    def affinity(self, user: UserState, item_id: str) -> float:
        """Taste for one item in [-1, 1], relative to the user's strongest taste."""
        return next((a for _, a in self.liked(user, (item_id,))), 0.0)

    def liked(self, user: UserState, items: Iterable[str]) -> list[tuple[str, float]]:
        """(item, affinity) for each of `items` the user's taste says something about (not 0),
        in their order. The user's strongest taste is found once, and each (category, tags)
        combination is scored once: many items share one."""
        taste = user.taste
        if not taste:
            return []
        get_taste = taste.get
        get_tag = {key[1:]: 0.5 * value for key, value in taste.items() if key.startswith("#")}.get
        lead = max(map(abs, taste.values()), default=0.0) or 1.0
        items = list(items)
        numbers = list(map(self.catalog.content_ids.get, items))  # None: not in the catalogue
        combinations = self.catalog.combinations
        scores: dict[int | None, float] = {None: 0.0}
        for number in set(numbers):  # each combination once (its value does not depend on the order)
            if number is not None:
                category, tags = combinations[number]
                s = get_taste(category, 0.0) if category else 0.0
                for tag in tags:
                    s += get_tag(tag, 0.0)
                scores[number] = max(-1.0, min(1.0, s / lead))
        return [(item, a) for item, a in zip(items, map(scores.__getitem__, numbers)) if a]

    def candidates(self, user: UserState, n: int) -> list[tuple[str, str]]:
        """(item, reason) for items still new (catalog.NEW_WINDOW_MS of the user's last event)
        in the user's favourite categories, newest first."""
        out = []
        for cat in self.liked_categories(user):
            for item in self.catalog.new_items(cat, user.last_ts)[:n]:
                out.append((item, f"new in {cat}, a category you like"))
        return out

    # content has no model-wide state of its own
    def export_dirty(self) -> dict[str, object]:
        return {}

    def import_rows(self, rows: dict[str, object]) -> None:
        pass
