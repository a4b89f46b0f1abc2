"""Online matrix factorisation with pairwise (BPR-style) updates, one event at a time.

A user is represented by their own learned vector plus the mean vector of their latest session
items (so a brand-new session already has a taste after one click). Each positive event is a
pairwise step "this item over a sampled one", scaled by the event type's weight; skips and
dislikes push the item away. Negatives are sampled from the event id with blake2b, so the same
input gives the same model. Scoring is one matrix-vector product over a candidate index array.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from .events import Interaction
from .user_state import UserState

SESSION_ITEMS = 5  # latest session items averaged into the user's representation


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class OnlineMF:
    name = "mf"

    def __init__(self, factors: int = 16, learning_rate: float = 0.05, regularization: float = 0.002,
                 init_scale: float = 0.1):
        self.factors = factors
        self.lr = learning_rate
        self.reg = regularization
        self.init_scale = init_scale
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.vectors = np.zeros((256, factors))
        self.bias = np.zeros(256)
        self._dirty: set[str] = set()

    # -- item rows ------------------------------------------------------------------------
    def _row(self, item_id: str) -> int:
        """The item's row, created with a seeded initial vector (learning only)."""
        i = self.index.get(item_id)
        if i is None:
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

    # -- the user's representation (read-only) ----------------------------------------------
    def user_vector(self, user: UserState) -> np.ndarray | None:
        rows = [self.index[i] for i in user.session_items[-SESSION_ITEMS:] if i in self.index]
        vec = np.asarray(user.factors) if user.factors else None
        if rows:
            pooled = self.vectors[rows].sum(axis=0)
            pooled *= 1.0 / len(rows)
            vec = pooled if vec is None else vec + pooled
        return vec

    # -- learning -------------------------------------------------------------------------
    def learn_one(self, ev: Interaction, user: UserState) -> None:
        """`user` is the state before the event; its `factors` are updated in place."""
        i = self._row(ev.item_id)
        index = self.index
        rows = [index[x] for x in user.session_items[-SESSION_ITEMS:] if x in index]
        V, bias, lr = self.vectors, self.bias, self.lr
        u = np.array(user.factors) if user.factors else None
        if rows:
            p = V[rows].sum(axis=0)
            p *= 1.0 / len(rows)
            if u is not None:
                p += u
        else:
            p = u if u is not None else np.zeros(self.factors)
        keep = 1.0 - lr * self.reg
        vi = V[i].copy()
        if ev.is_negative:
            g = lr * -ev.weight * _sigmoid(float(p @ vi) + bias[i])
            diff = -vi
            V[i] = vi * keep - g * p
            bias[i] -= g
        else:
            j = _seed(ev.event_id or f"{ev.user_id}/{ev.ts}") % len(self.ids)
            if j == i:
                j = (j + 1) % len(self.ids)
            if j == i:  # a single known item: nothing to compare against yet
                return
            vj = V[j].copy()
            diff = vi - vj
            g = lr * min(ev.weight, 4.0) * _sigmoid(-(float(p @ diff) + bias[i] - bias[j]))
            gp = g * p
            V[i] = vi * keep + gp
            V[j] = vj * keep - gp
            bias[i] += g
            bias[j] -= g
            self._dirty.add(self.ids[j])
        # The user's own vector and the session items it was pooled from share the gradient.
        step = g * diff
        user.factors = (step if u is None else u * keep + step).tolist()
        if rows:
            V[rows] += step * (1.0 / len(rows))
            ids = self.ids
            self._dirty.update([ids[r] for r in rows])
        self._dirty.add(ev.item_id)

    # -- scoring (never writes) -----------------------------------------------------------
    def rows_of(self, item_ids: list[str]) -> np.ndarray:
        """Row per item; -1 for items the model has never seen."""
        get = self.index.get
        return np.array([get(i, -1) for i in item_ids], dtype=np.int64)

    def score_rows(self, vec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Raw scores for known rows (rows >= 0), vectorised over the candidates."""
        return self.vectors[rows] @ vec + self.bias[rows]

    def top(self, vec: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The n best items of the whole catalogue (one matrix-vector product)."""
        size = len(self.ids)
        if not size or n <= 0:
            return []
        scores = self.vectors[:size] @ vec + self.bias[:size]
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
        size = len(self.ids)
        scores = self.vectors[:size] @ vec + self.bias[:size]
        return int(np.count_nonzero(scores > scores[row])) < n

    # -- persistence ----------------------------------------------------------------------
    def export_dirty(self) -> dict[str, object]:
        rows: dict[str, object] = {}
        for item in self._dirty:
            i = self.index[item]
            rows[item] = [i, float(self.bias[i]), *self.vectors[i].tolist()]
        self._dirty.clear()
        return rows

    def import_rows(self, rows: dict[str, object]) -> None:
        for item in sorted(rows, key=lambda k: rows[k][0]):  # type: ignore[index]
            i, b, *vec = rows[item]  # type: ignore[misc]
            self._place(item, int(i))
            self.bias[i] = b
            self.vectors[i] = vec


def _sigmoid(x: float) -> float:
    if x < -30.0:
        return 0.0
    if x > 30.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-x))
