"""Content model: a per-user taste profile over item categories and tags (from the `items`
topic), and the candidates it implies — including items added to the catalogue a moment ago.

The profile lives in the user's state (`UserState.taste`), so it is stored, restored and
forgotten with the user. Keys: the category name, and `#tag` for tags.
"""
from __future__ import annotations

from online_models.catalog import Catalog
from online_models.events import Interaction
from online_models.state.user_state import UserState

TASTE_DECAY = 0.9   # each new signal counts a little more than the old ones
MAX_TASTE = 24      # keys kept per user


def _no_affinity(item_id: str) -> float:
    """A user without taste likes nothing in particular."""
    return 0.0


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
        return self.affinity_of(user)(item_id)

    def affinity_of(self, user: UserState):
        """`affinity(user, ·)` for many items: the user's strongest taste is found once, and each
        (category, tags) combination is scored once (many items share one)."""
        taste = user.taste
        if not taste:
            return _no_affinity
        get_item, get_taste = self.catalog.get, taste.get
        lead = max(map(abs, taste.values()), default=0.0) or 1.0
        known: dict[tuple, float] = {}

        def affinity(item_id: str) -> float:
            item = get_item(item_id)
            if item is None:
                return 0.0
            key = (item.category, item.tags)
            a = known.get(key)
            if a is None:
                s = get_taste(item.category, 0.0) if item.category else 0.0
                for tag in item.tags:
                    s += 0.5 * get_taste("#" + tag, 0.0)
                a = known[key] = max(-1.0, min(1.0, s / lead))
            return a
        return affinity

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
