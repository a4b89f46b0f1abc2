"""Session co-visitation: items seen together within sessions, learned online.

When a user interacts with item j, each of the previous `window` items i of the same session
gains j as a neighbour (forward, weight 1/distance) and j gains i (backward, half of that).
Weights are scaled by event type and forward-decayed in event time, so fresh co-visits count
more than old ones. Rows are capped; the weakest neighbours are pruned deterministically, and
so is the number of rows: past `max_items`, the rows with the lowest total weight (ties by key)
are evicted.

The rows are arrays over interned item ids (item_ids.py), learned and read by compiled
kernels (covisit_kernels.py); ties order by each id's hash, never by arrival or layout.
"""
from __future__ import annotations

import numpy as np

from online_models.events import Interaction
from online_models.models import covisit_kernels as k
from online_models.models.decay import ForwardDecay
from online_models.models.trending import keep_after_eviction
from online_models.state import binrows, rowkeys
from online_models.state.item_ids import ItemIds
from online_models.state.user_state import UserState

NONE: tuple[list[str], np.ndarray] = ([], np.zeros(0))


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
        self._reset(ItemIds(), 1 << 12)
        self._pending: set[str] = set()  # rows changed before the last renumbering, by id
        self._best: dict[int, tuple[list[str], np.ndarray]] = {}  # cached `strongest` answers
        self._mark = np.zeros(0, dtype=np.int64)  # scratch of first_row_holding

    def _reset(self, ids: ItemIds, arena: int) -> None:
        self.ids = ids
        n = max(256, len(ids))
        self.off = np.zeros(n, dtype=np.int64)
        self.ln = np.zeros(n, dtype=np.int64)
        self.cp = np.zeros(n, dtype=np.int64)
        self.dirty = np.zeros(n, dtype=np.uint8)
        self.nb = np.zeros(arena, dtype=np.int64)
        self.wt = np.zeros(arena)
        self.top = 0
        self.n_rows = 0

    def __len__(self) -> int:
        """The number of rows."""
        return self.n_rows

    # -- learning -------------------------------------------------------------------------
    def learn_one(self, ev: Interaction, user: UserState) -> None:
        """`user` is the state *before* this event is applied."""
        if ev.is_negative or user.starts_new_session(ev):
            return
        if self.decay.needs_rescale(ev.ts):
            self._rescale(self.decay.rescale_to(ev.ts))
        base = ev.weight * self.decay.factor(ev.ts)
        if not base:  # so much older than the landmark that its decayed weight is 0: no signal
            return
        j = ev.item_id
        seen: set[str] = {j}
        before: list[str] = []
        for i in reversed(user.session_items):
            if i not in seen:
                seen.add(i)
                before.append(i)
                if len(before) == self.window:
                    break
        if not before:
            return
        self._learn(j, before, base)

    def _learn(self, j: str, before: list[str], base: float) -> None:
        """Item j was seen after `before` (newest first): each gains j forward, j gains each back."""
        get = self.ids.get
        new = sum(1 for i in (j, *before) if get(i) < 0 or not self.cp[get(i)])
        if new and self.n_rows + new > self.max_items:
            self._evict_rows(new)
        self._grow_to(len(self.ids) + 1 + len(before), 2 * len(before))  # before interning: may renumber
        ids = self.ids
        jj = ids.intern(j)
        pa, pb, pw = [], [], []
        for distance, i in enumerate(before, 1):
            ii = ids.intern(i)
            w = base / distance
            pa += (ii, jj)
            pb += (jj, ii)
            pw += (w, w * self.backward)
        self.top, created = k.add_pairs(self.off, self.ln, self.cp, self.nb, self.wt, self.top, ids.tie,
                                        self.dirty, np.array(pa), np.array(pb), np.array(pw),
                                        self.max_neighbors)
        self.n_rows += created
        if self._best:
            for a in pa:
                self._best.pop(a, None)

    def _grow_to(self, items: int, pairs: int) -> None:
        """Room for `items` rows and `pairs` more additions."""
        if items > len(self.off):
            n = max(items, 2 * len(self.off))
            for name in ("off", "ln", "cp", "dirty"):
                old = getattr(self, name)
                new = np.zeros(n, dtype=old.dtype)
                new[:len(old)] = old
                setattr(self, name, new)
        need = self.top + k.room_needed(pairs, self.max_neighbors)
        if need > len(self.nb):
            self._renumber()
            need = self.top + k.room_needed(pairs, self.max_neighbors)
            if need > len(self.nb):
                n = max(need, 2 * len(self.nb))
                self.nb = np.concatenate([self.nb, np.zeros(n - len(self.nb), dtype=np.int64)])
                self.wt = np.concatenate([self.wt, np.zeros(n - len(self.wt))])

    def _renumber(self) -> None:
        """Drop the ids no row refers to and pack the arena: memory follows the rows kept."""
        live = np.flatnonzero(self.cp[:len(self.ids)])
        used = np.zeros(len(self.ids), dtype=bool)
        used[live] = True
        for a in live:
            used[self.nb[self.off[a]:self.off[a] + self.ln[a]]] = True
        self._pending.update(self.ids.ids[a] for a in np.flatnonzero(self.dirty[:len(self.ids)]))
        remap = np.cumsum(used) - 1
        fresh = ItemIds()
        for a in np.flatnonzero(used):
            fresh.intern(self.ids.ids[a])
        slots = int(self.cp.sum())
        new_nb = np.zeros(max(1 << 12, 2 * slots), dtype=np.int64)
        new_wt = np.zeros(len(new_nb))
        self.top = k.compact(self.off, self.ln, self.cp, self.nb, self.wt, remap, new_nb, new_wt)
        self.nb, self.wt, self.ids = new_nb, new_wt, fresh
        self.dirty[:] = 0
        self._best.clear()

    def _evict_rows(self, new: int) -> None:
        """Make room for `new` more rows: keep the rows with the most (decayed) weight."""
        keep = max(0, min(keep_after_eviction(self.max_items), self.max_items - new))
        self.n_rows -= k.evict_coldest(self.off, self.ln, self.cp, self.wt, self.ids.tie, self.dirty, keep)
        self._renumber()

    def _rescale(self, mult: float) -> None:
        self.n_rows -= k.rescale(self.off, self.ln, self.cp, self.nb, self.wt, self.dirty, mult)
        self._best.clear()

    # -- reading (never writes model state; the cache is derived) -------------------------
    def strongest(self, item_id: str) -> tuple[list[str], np.ndarray]:
        """An item's strongest neighbours, best first, and their weights normalised so the best
        is 1.0 (cached until the row changes)."""
        a = self.ids.get(item_id)
        if a < 0 or not self.cp[a]:
            return NONE
        best = self._best.get(a)
        if best is None:
            nb, wt = k.strongest(self.off, self.ln, self.nb, self.wt, self.ids.tie, a, self.score_neighbors)
            lead = float(wt[0]) if len(wt) else 1.0
            ids = self.ids.ids
            best = self._best[a] = ([ids[b] for b in nb.tolist()], wt / (lead or 1.0))
        return best

    def neighbors(self, item_id: str) -> list[tuple[str, float]]:
        """`strongest` as (item, weight) pairs."""
        items, values = self.strongest(item_id)
        return list(zip(items, values.tolist()))

    def row(self, item_id: str) -> dict[str, float]:
        """An item's whole row, neighbour -> weight (empty: no row)."""
        a = self.ids.get(item_id)
        if a < 0 or not self.cp[a]:
            return {}
        o, n = self.off[a], self.ln[a]
        ids = self.ids.ids
        return dict(zip([ids[b] for b in self.nb[o:o + n].tolist()], self.wt[o:o + n].tolist()))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Every row, by item id in sorted order: the learned state, for inspection and tests."""
        live = np.flatnonzero(self.cp[:len(self.ids)]).tolist()
        return {a: self.row(a) for a in sorted(self.ids.ids[i] for i in live)}

    def weight(self, a: str, b: str) -> float:
        return self.row(a).get(b, 0.0)

    def first_row_holding(self, rows: list[str], items: list[str]) -> list[int]:
        """For each item, the index in `rows` of the first of those items' rows that holds it, else -1."""
        get = self.ids.get
        if len(self._mark) < len(self.ids):
            self._mark = np.zeros(len(self.off), dtype=np.int64)
        return k.first_row_holding(self.off, self.ln, self.nb, np.array([get(a) for a in rows], dtype=np.int64),
                                   np.array([get(i) for i in items], dtype=np.int64), self._mark).tolist()

    # -- persistence ----------------------------------------------------------------------
    def export_dirty(self) -> dict[str, object]:
        """Changed rows since the last call; None deletes an evicted one."""
        changed = self._pending
        changed.update(self.ids.ids[a] for a in np.flatnonzero(self.dirty[:len(self.ids)]))
        rows: dict[str, object] = {rowkeys.key(a): self._packed(a) for a in changed}
        self._pending = set()
        self.dirty[:] = 0
        return self.decay.stamp(rows)

    def _packed(self, item_id: str) -> bytes | None:
        """The item's row as binary neighbours (binrows.py); None: no row."""
        a = self.ids.get(item_id)
        if a < 0 or not self.cp[a]:
            return None
        o, n = self.off[a], self.ln[a]
        ids = self.ids.ids
        return binrows.pack_neighbours([ids[b] for b in self.nb[o:o + n].tolist()], self.wt[o:o + n])

    def mark_all_dirty(self) -> None:
        self.dirty[:len(self.ids)] = self.cp[:len(self.ids)] > 0

    def import_rows(self, rows: dict[str, object]) -> None:
        self.decay.take_landmark(rows)
        for key in sorted(filter(rowkeys.is_data, rows)):
            (a,) = rowkeys.parts(key)
            raw = rows[key]
            row: dict[str, float] = binrows.unpack_neighbours(raw) if isinstance(raw, bytes) else raw  # type: ignore[assignment]
            self._grow_to(len(self.ids) + 1 + len(row), 1)  # before interning: may renumber
            ids = self.ids
            aa = ids.intern(a)
            nbs = [ids.intern(b) for b in row]
            n = len(nbs)
            cap = max(k.FIRST_CAPACITY, n)
            if self.cp[aa]:
                self.n_rows -= 1
            self.off[aa], self.ln[aa], self.cp[aa] = self.top, n, cap
            self.nb[self.top:self.top + n] = nbs
            self.wt[self.top:self.top + n] = list(row.values())
            self.top += cap
            self.n_rows += 1
        self._best.clear()
