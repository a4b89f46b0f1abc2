"""Time-decayed trending items, globally and per category: the cold-start answer and a
candidate source for everyone."""
from __future__ import annotations

import math
from typing import Callable

from online_models.catalog import Catalog
from online_models.events import Interaction
from online_models.models.decay import ForwardDecay
from online_models.models.topn import GrowingTopN
from online_models.state import rowkeys

GLOBAL = ""
START = "^start"  # what people open a session with: the better answer before a session has items
PINNED = (GLOBAL, START)  # scopes never evicted


def keep_after_eviction(capacity: int) -> int:
    """How many entries survive an eviction pass: 10 % headroom, so a pass (one sort) runs once
    per capacity/10 new entries instead of on every new entry."""
    return max(1, capacity - capacity // 10)


class Trending:
    """Decayed counts per scope. By default an event counts globally and in its item's category;
    `scopes_of` replaces that (the context model counts per device and time of day instead).

    Memory is bounded: at most `max_items` items per scope and `max_scopes` scopes. Past either,
    the coldest go — lowest decayed value (a scope's: the sum of its items'), ties by key — which
    depends on the input alone, so a replay evicts the same entries."""

    def __init__(self, catalog: Catalog, half_life_hours: float = 6.0, top_n: int = 200,
                 name: str = "trending", scopes_of: Callable[[Interaction], tuple[str, ...]] | None = None,
                 max_items: int = 50_000, max_scopes: int = 2_000):
        self.name = name
        self.catalog = catalog
        self.scopes_of = scopes_of
        self.decay = ForwardDecay(half_life_hours * 3600_000)
        self.top_n = top_n
        self.max_items = max_items
        self.max_scopes = max(max_scopes, len(PINNED) + 1)
        self.values: dict[str, dict[str, float]] = {}   # scope -> item -> forward-decayed value
        self.tops: dict[str, GrowingTopN] = {}
        self._dirty: set[tuple[str, str]] = set()

    # -- learning -------------------------------------------------------------------------
    def learn_one(self, ev: Interaction, user: object = None) -> None:
        if ev.is_negative:
            return
        if self.decay.needs_rescale(ev.ts):
            self._rescale(self.decay.rescale_to(ev.ts))
        w = ev.weight * self.decay.factor(ev.ts)
        if not w:  # so much older than the landmark that its decayed weight is 0: no signal
            return
        if self.scopes_of is not None:
            for scope in self.scopes_of(ev):
                self._add(scope, ev.item_id, w)
            return
        self._add(GLOBAL, ev.item_id, w)
        if user is not None and user.starts_new_session(ev):  # type: ignore[attr-defined]
            self._add(START, ev.item_id, w)
        cat = self.catalog.category(ev.item_id)
        if cat:
            self._add(cat, ev.item_id, w)

    def _add(self, scope: str, item: str, w: float) -> None:
        vals = self.values.get(scope)
        if vals is None:
            if len(self.values) >= self.max_scopes:
                self._evict_scopes()
            vals = self.values[scope] = {}
            self.tops[scope] = GrowingTopN(self.top_n)
        v = vals.get(item, 0.0) + w
        vals[item] = v
        self.tops[scope].offer(item, v)
        self._dirty.add((scope, item))
        if len(vals) > self.max_items:
            self._evict_items(scope, vals)

    def _evict_items(self, scope: str, vals: dict[str, float]) -> None:
        # Worst first in the top's own order (value, then key), so an evicted item is never one
        # the top holds while a kept one is missing from it (keep >= top_n when capacity allows).
        keep = max(keep_after_eviction(self.max_items), min(self.max_items, self.top_n))
        ranked = sorted(vals.items(), key=lambda kv: (-kv[1], kv[0]))
        top = self.tops[scope]
        for item, _ in ranked[keep:]:
            del vals[item]
            top.discard(item)
            self._dirty.add((scope, item))

    def _evict_scopes(self) -> None:
        """Make room for one more scope: keep the hottest, never the pinned ones."""
        heat = sorted((-math.fsum(vals.values()), scope) for scope, vals in self.values.items()
                      if scope not in PINNED)
        pinned = len(self.values) - len(heat)
        keep = max(0, min(keep_after_eviction(self.max_scopes), self.max_scopes - 1) - pinned)
        for _, scope in heat[keep:]:
            self._drop_scope(scope)

    def _drop_scope(self, scope: str) -> None:
        for item in self.values.pop(scope):
            self._dirty.add((scope, item))
        del self.tops[scope]

    def _rescale(self, mult: float) -> None:
        for scope in list(self.values):
            vals = self.values[scope]
            for item in list(vals):
                v = vals[item] * mult
                if v:
                    vals[item] = v
                else:  # underflowed after a long quiet gap: no signal left, and no row
                    del vals[item]
                self._dirty.add((scope, item))
            self.tops[scope].scale(mult)
            if not vals:
                self._drop_scope(scope)

    # -- reading (never writes) -----------------------------------------------------------
    def top(self, category: str | None = None) -> list[tuple[str, float]]:
        """Best first, values normalised so the leader scores 1.0."""
        top = self.tops.get(category or GLOBAL)
        if not top:
            return []
        entries = top.items()
        lead = entries[0][1] or 1.0
        return [(item, v / lead) for item, v in entries]

    def top_raw(self, scope: str | None, n: int) -> tuple[list[tuple[float, str]], float]:
        """The n best as (-value, item) plus the leader's value: no copies beyond the slice.
        Scale by -1/leader to get the normalised [0, 1] scores of `top`."""
        top = self.tops.get(scope or GLOBAL)
        if not top:
            return [], 1.0
        entries = top.head(n)
        return entries, (-entries[0][0] or 1.0)

    def popularity(self, item_id: str) -> float:
        return self.values.get(GLOBAL, {}).get(item_id, 0.0)

    # -- persistence ----------------------------------------------------------------------
    def export_dirty(self) -> dict[str, object]:
        """Changed rows since the last call; None deletes an evicted one."""
        rows: dict[str, object] = {rowkeys.key(scope, item): self.values.get(scope, {}).get(item)
                                   for scope, item in self._dirty}
        self._dirty.clear()
        return self.decay.stamp(rows)

    def mark_all_dirty(self) -> None:
        self._dirty.update((scope, item) for scope, vals in self.values.items() for item in vals)

    def import_rows(self, rows: dict[str, object]) -> None:
        self.decay.take_landmark(rows)
        for key in sorted(filter(rowkeys.is_data, rows)):
            scope, item = rowkeys.parts(key)
            self.values.setdefault(scope, {})[item] = rows[key]
        for scope, vals in self.values.items():
            top = self.tops[scope] = GrowingTopN(self.top_n)
            for item, v in vals.items():
                top.offer(item, v)
