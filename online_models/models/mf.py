"""Online matrix factorisation with pairwise (BPR-style) updates, one event at a time.

A user is represented by their own learned vector plus the mean vector of their latest session
items (so a brand-new session already has a taste after one click). Each positive event is a
pairwise step "this item over a sampled one", scaled by the event type's weight; skips and
dislikes push the item away. Negatives are sampled from the event id with blake2b, so the same
input gives the same model. Scoring is one compiled pass over a candidate index array (mf_kernels.py: sequential
loops, the same numbers on every CPU).

At most `max_items` item rows: past that, the items whose last interaction is the oldest in event
time (ties by id) are evicted, and the last rows move into the holes so the matrix stays dense.
"""
from __future__ import annotations

import hashlib

import numpy as np

from online_models.events import Interaction
from online_models.models import mf_kernels as kernels
from online_models.models.trending import keep_after_eviction
from online_models.state import binrows, rowkeys
from online_models.state.user_state import UserState

SESSION_ITEMS = 5  # latest session items averaged into the user's representation


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class OnlineMF:
    name = "mf"

    def __init__(self, factors: int = 16, learning_rate: float = 0.05, regularization: float = 0.002,
                 init_scale: float = 0.1, max_items: int = 100_000):
        self.factors = factors
        self.lr = learning_rate
        self.reg = regularization
        self.init_scale = init_scale
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.vectors = np.zeros((256, factors))
        self.bias = np.zeros(256)
        self.seen: dict[str, int] = {}  # item -> ts of its latest interaction: what eviction goes by
        self.max_items = max(2, max_items)
        self._dirty: set[str] = set()

    # -- item rows ------------------------------------------------------------------------
    def _row(self, item_id: str) -> int:
        """The item's row, created with a seeded initial vector (learning only)."""
        i = self.index.get(item_id)
        if i is None:
            if len(self.ids) >= self.max_items:
                self._evict()
            i = self._place(item_id, len(self.ids))
            rng = np.random.default_rng(_seed(item_id))
            self.vectors[i] = rng.normal(0.0, self.init_scale, self.factors)
            self._dirty.add(item_id)
        return i

    def _place(self, item_id: str, i: int) -> int:
        while i >= len(self.vectors):
            self.vectors = np.vstack([self.vectors, np.zeros_like(self.vectors)])
            self.bias = np.concatenate([self.bias, np.zeros_like(self.bias)])
        self.index[item_id] = i
        while len(self.ids) <= i:
            self.ids.append("")
        self.ids[i] = item_id
        return i

    def _evict(self) -> None:
        """Make room for one more item: drop the least recently interacted with, then move the
        last rows into the holes (each moved item's row is rewritten with its new index)."""
        keep = min(keep_after_eviction(self.max_items), self.max_items - 1)
        coldest = sorted(self.ids, key=lambda item: (self.seen.get(item, 0), item))[:len(self.ids) - keep]
        holes = sorted(self.index.pop(item) for item in coldest)
        for item in coldest:
            self.seen.pop(item, None)
            self._dirty.add(item)
        size = len(self.ids) - len(coldest)
        gone = set(holes)
        movers = [r for r in range(size, len(self.ids)) if r not in gone]
        targets = [h for h in holes if h < size]
        for src, dst in zip(movers, targets):
            item = self.ids[src]
            self.vectors[dst], self.bias[dst] = self.vectors[src], self.bias[src]
            self.ids[dst] = item
            self.index[item] = dst
            self._dirty.add(item)
        del self.ids[size:]
        self.vectors[size:] = 0.0
        self.bias[size:] = 0.0

    # -- the user's representation (read-only) ----------------------------------------------
    def user_vector(self, user: UserState) -> np.ndarray | None:
        rows = [self.index[i] for i in user.session_items[-SESSION_ITEMS:] if i in self.index]
        if not rows and not user.factors:
            return None
        return kernels.pooled(self.vectors, np.array(rows, dtype=np.int64), np.array(user.factors, dtype=float))

    # -- learning -------------------------------------------------------------------------
    def learn_one(self, ev: Interaction, user: UserState) -> None:
        """`user` is the state before the event; its `factors` are updated in place."""
        i = self._row(ev.item_id)
        self.seen[ev.item_id] = max(ev.ts, self.seen.get(ev.item_id, ev.ts))
        self._dirty.add(ev.item_id)
        index = self.index
        rows = [index[x] for x in user.session_items[-SESSION_ITEMS:] if x in index]
        j = -1
        if not ev.is_negative:
            j = _seed(ev.event_id or f"{ev.user_id}/{ev.ts}") % len(self.ids)
            if j == i:
                j = (j + 1) % len(self.ids)
            if j == i:  # a single known item: nothing to compare against yet
                return
            self._dirty.add(self.ids[j])
        user.factors = kernels.step(self.vectors, self.bias, i, j, np.array(rows, dtype=np.int64),
                                    np.array(user.factors, dtype=float), ev.is_negative, ev.weight,
                                    self.lr, self.reg).tolist()
        if rows:
            ids = self.ids
            self._dirty.update([ids[r] for r in rows])

    # -- scoring (never writes) -----------------------------------------------------------
    def rows_of(self, item_ids: list[str]) -> np.ndarray:
        """Row per item; -1 for items the model has never seen."""
        get = self.index.get
        return np.array([get(i, -1) for i in item_ids], dtype=np.int64)

    def score_rows(self, vec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Raw scores for known rows (rows >= 0), vectorised over the candidates."""
        return kernels.scores(self.vectors, self.bias, rows, vec)

    def probability_rows(self, vec: np.ndarray, rows: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """`scale` times the sigmoid of the raw scores of known rows: the MF's ranking feature."""
        return scale / (1.0 + np.exp(-self.score_rows(vec, rows)))

    def top(self, vec: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The n best items of the whole catalogue (one matrix-vector product)."""
        size = len(self.ids)
        if not size or n <= 0:
            return []
        scores = kernels.all_scores(self.vectors, self.bias, size, vec)
        if size > n:
            part = np.argpartition(-scores, n)[:n]
        else:
            part = np.arange(size)
        order = part[np.lexsort((part, -scores[part]))]
        ids = self.ids
        return [(ids[r], float(scores[r])) for r in order]

    def in_top(self, vec: np.ndarray, item_id: str, n: int) -> bool:
        """Would `item_id` be among `top(vec, n)`? One matrix-vector product, no sort."""
        row = self.index.get(item_id)
        if row is None:
            return False
        scores = kernels.all_scores(self.vectors, self.bias, len(self.ids), vec)
        return int(np.count_nonzero(scores > scores[row])) < n

    # -- persistence ----------------------------------------------------------------------
    def export_dirty(self) -> dict[str, object]:
        """Changed rows since the last call, binary (index, bias, last ts, vector: binrows.py);
        None deletes."""
        rows: dict[str, object] = {}
        for item in self._dirty:
            i = self.index.get(item)
            rows[rowkeys.key(item)] = None if i is None else \
                binrows.pack_vector(i, float(self.bias[i]), self.seen.get(item, 0), self.vectors[i])
        self._dirty.clear()
        return rows

    def mark_all_dirty(self) -> None:
        self._dirty.update(self.ids)

    def import_rows(self, rows: dict[str, object]) -> None:
        data = {rowkeys.parts(k)[0]: (binrows.readable(v) if isinstance(v, bytes) else v)
                for k, v in rows.items() if rowkeys.is_data(k)}
        for item in sorted(data, key=lambda k: data[k][0]):  # type: ignore[index]
            i, b, *rest = data[item]  # type: ignore[misc]
            if len(rest) > self.factors:  # format 1 rows had no last-interaction ts
                self.seen[item] = int(rest.pop(0))
            self._place(item, int(i))
            self.bias[i] = b
            self.vectors[i] = rest

