"""Time-decayed trending items, globally and per category: the cold-start answer and a
candidate source for everyone."""
from __future__ import annotations

from typing import Callable

from .catalog import Catalog
from .decay import ForwardDecay
from .events import Interaction
from .topn import GrowingTopN

GLOBAL = ""
START = "^start"  # what people open a session with: the better answer before a session has items


class Trending:
    """Decayed counts per scope. By default an event counts globally and in its item's category;
    `scopes_of` replaces that (the context model counts per device and time of day instead)."""

    def __init__(self, catalog: Catalog, half_life_hours: float = 6.0, top_n: int = 200,
                 name: str = "trending", scopes_of: Callable[[Interaction], tuple[str, ...]] | None = None):
        self.name = name
        self.catalog = catalog
        self.scopes_of = scopes_of
        self.decay = ForwardDecay(half_life_hours * 3600_000)
        self.top_n = top_n
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
            vals = self.values[scope] = {}
            self.tops[scope] = GrowingTopN(self.top_n)
        v = vals.get(item, 0.0) + w
        vals[item] = v
        self.tops[scope].offer(item, v)
        self._dirty.add((scope, item))

    def _rescale(self, mult: float) -> None:
        for scope, vals in self.values.items():
            for item in vals:
                vals[item] *= mult
                self._dirty.add((scope, item))
            self.tops[scope].scale(mult)

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
        rows: dict[str, object] = {f"{scope}\x1f{item}": self.values[scope][item]
                                   for scope, item in self._dirty}
        self._dirty.clear()
        return self.decay.stamp(rows)

    def import_rows(self, rows: dict[str, object]) -> None:
        self.decay.take_landmark(rows)
        for key in sorted(rows):
            scope, item = key.split("\x1f", 1)
            self.values.setdefault(scope, {})[item] = rows[key]
        for scope, vals in self.values.items():
            top = self.tops[scope] = GrowingTopN(self.top_n)
            for item, v in vals.items():
                top.offer(item, v)
