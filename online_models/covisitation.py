"""Session co-visitation: items seen together within sessions, learned online.

When a user interacts with item j, each of the previous `window` items i of the same session
gains j as a neighbour (forward, weight 1/distance) and j gains i (backward, half of that).
Weights are scaled by event type and forward-decayed in event time, so fresh co-visits count
more than old ones. Rows are capped; the weakest neighbours are pruned deterministically, and
so is the number of rows: past `max_items`, the rows with the lowest total weight (ties by key)
are evicted.
"""
from __future__ import annotations

import math

from . import rowkeys
from .decay import ForwardDecay
from .events import Interaction
from .topn import GrowingTopN
from .trending import keep_after_eviction
from .user_state import UserState


class CoVisitation:
    name = "covisit"

    def __init__(self, window: int = 5, backward: float = 0.5, max_neighbors: int = 100,
                 score_neighbors: int = 40, half_life_hours: float = 72.0, max_items: int = 100_000,
                 name: str = "covisit"):
        self.name = name
        self.window = window
        self.max_items = max_items
        self.backward = backward
        self.max_neighbors = max_neighbors
        self.score_neighbors = score_neighbors
        self.decay = ForwardDecay(half_life_hours * 3600_000)
        self.rows: dict[str, dict[str, float]] = {}
        self._tops: dict[str, GrowingTopN] = {}  # derived: each row's strongest neighbours
        self._best: dict[str, list[tuple[str, float]]] = {}  # cached strongest neighbours, normalised
        self._dirty: set[str] = set()

    # -- learning -------------------------------------------------------------------------
    def learn_one(self, ev: Interaction, user: UserState) -> None:
        """`user` is the state *before* this event is applied."""
        if ev.is_negative or user.starts_new_session(ev):
            return
        if self.decay.needs_rescale(ev.ts):
            self._rescale(self.decay.rescale_to(ev.ts))
        j = ev.item_id
        base = ev.weight * self.decay.factor(ev.ts)
        if not base:  # so much older than the landmark that its decayed weight is 0: no signal
            return
        seen: set[str] = {j}
        distance = 0
        for i in reversed(user.session_items):
            if i in seen:
                continue
            seen.add(i)
            distance += 1
            if distance > self.window:
                break
            w = base / distance
            self._add(i, j, w)
            self._add(j, i, w * self.backward)

    def _add(self, a: str, b: str, w: float) -> None:
        row = self.rows.get(a)
        if row is None:
            if len(self.rows) >= self.max_items:
                self._evict_rows()
            row = self.rows[a] = {}
        v = row[b] = row.get(b, 0.0) + w
        top = self._tops.get(a)
        if top is None:
            top = self._tops[a] = GrowingTopN(self.score_neighbors)
        top.offer(b, v)
        if len(row) > 2 * self.max_neighbors:
            self._prune(a, row)
        self._best.pop(a, None)
        self._dirty.add(a)

    def _prune(self, a: str, row: dict[str, float]) -> None:
        keep = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_neighbors]
        self.rows[a] = dict(keep)

    def _evict_rows(self) -> None:
        """Make room for one more row: keep the rows with the most (decayed) weight."""
        heat = sorted((-math.fsum(row.values()), a) for a, row in self.rows.items())
        for _, a in heat[min(keep_after_eviction(self.max_items), self.max_items - 1):]:
            self._drop_row(a)

    def _drop_row(self, a: str) -> None:
        del self.rows[a]
        self._tops.pop(a, None)
        self._best.pop(a, None)
        self._dirty.add(a)

    def _rescale(self, mult: float) -> None:
        for a in list(self.rows):
            row = self.rows[a]
            for b in list(row):
                v = row[b] * mult
                if v:
                    row[b] = v
                else:  # underflowed after a long quiet gap: no signal left
                    del row[b]
            self._dirty.add(a)
            if not row:
                self._drop_row(a)
        for top in self._tops.values():
            top.scale(mult)
        self._best.clear()

    # -- reading (never writes model state; the cache is derived) -------------------------
    def neighbors(self, item_id: str) -> list[tuple[str, float]]:
        """Strongest neighbours of an item, best first, normalised so the best is 1.0."""
        best = self._best.get(item_id)
        if best is None:
            top = self._tops.get(item_id)
            if not top:
                return []
            entries = top.items()
            lead = entries[0][1] or 1.0
            best = self._best[item_id] = [(b, v / lead) for b, v in entries]
        return best

    def weight(self, a: str, b: str) -> float:
        row = self.rows.get(a)
        return row.get(b, 0.0) if row else 0.0

    # -- persistence ----------------------------------------------------------------------
    def export_dirty(self) -> dict[str, object]:
        """Changed rows since the last call; None deletes an evicted one."""
        rows: dict[str, object] = {rowkeys.key(a): self.rows.get(a) for a in self._dirty}
        self._dirty.clear()
        return self.decay.stamp(rows)

    def mark_all_dirty(self) -> None:
        self._dirty.update(self.rows)

    def import_rows(self, rows: dict[str, object]) -> None:
        self.decay.take_landmark(rows)
        for key in sorted(filter(rowkeys.is_data, rows)):
            (a,) = rowkeys.parts(key)
            row = self.rows[a] = dict(rows[key])  # type: ignore[arg-type]
            top = self._tops[a] = GrowingTopN(self.score_neighbors)
            for b, v in row.items():
                top.offer(b, v)
        self._best.clear()
