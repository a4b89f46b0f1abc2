"""Item ids interned to dense integers, so a model's state can live in arrays that compiled
kernels read and write (docs/decisions/0017).

The integers are internal: they depend on arrival order and are rebuilt when state is restored,
so nothing persisted or published may depend on them. What orders ties instead is each id's
`tie` key, a 63-bit hash of the id's text — a function of the id alone, the same on every
machine and after every restore.
"""
from __future__ import annotations

import hashlib

import numpy as np


def tie_key(item_id: str) -> int:
    """The id's tie-break key: blake2b of its UTF-8 text, 63 bits (fits an int64)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big") >> 1


class ItemIds:
    __slots__ = ("index", "ids", "tie")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.tie = np.zeros(256, dtype=np.int64)  # tie[i]: the tie-break key of ids[i]

    def __len__(self) -> int:
        return len(self.ids)

    def intern(self, item_id: str) -> int:
        """The id's integer, assigned on first sight."""
        i = self.index.get(item_id)
        if i is None:
            i = self.index[item_id] = len(self.ids)
            self.ids.append(item_id)
            if i >= len(self.tie):
                self.tie = np.concatenate([self.tie, np.zeros_like(self.tie)])
            self.tie[i] = tie_key(item_id)
        return i

    def get(self, item_id: str) -> int:
        """The id's integer, or -1 for an id never interned (reading never interns)."""
        return self.index.get(item_id, -1)
