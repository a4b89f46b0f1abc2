"""A running top-N over values that only grow (see decay.py), kept sorted with bisect."""
from __future__ import annotations

from bisect import bisect_left, insort


class GrowingTopN:
    """Top `n` keys by value. Ties break on the key so the order is deterministic."""

    __slots__ = ("n", "_entries", "_members")

    def __init__(self, n: int):
        self.n = n
        self._entries: list[tuple[float, str]] = []  # (-value, key), ascending = best first
        self._members: dict[str, float] = {}

    def offer(self, key: str, value: float) -> None:
        old = self._members.get(key)
        if old is not None:
            del self._entries[bisect_left(self._entries, (-old, key))]
        elif len(self._entries) >= self.n and (-value, key) >= self._entries[-1]:
            return
        insort(self._entries, (-value, key))
        self._members[key] = value
        if len(self._entries) > self.n:
            _, dropped = self._entries.pop()
            del self._members[dropped]

    def discard(self, key: str) -> None:
        old = self._members.pop(key, None)
        if old is not None:
            del self._entries[bisect_left(self._entries, (-old, key))]

    def head(self, n: int) -> list[tuple[float, str]]:
        """The n best as stored: (-value, key), best first."""
        return self._entries[:n]

    def items(self) -> list[tuple[str, float]]:
        return [(k, -v) for v, k in self._entries]

    def scale(self, mult: float) -> None:
        """Multiply every value by `mult` (> 0). Values that underflow to 0.0 carry no signal and
        leave; the rest are sorted again, since rounding of tiny values can tie or swap neighbours
        and bisect needs the exact order."""
        entries = [(v * mult, k) for v, k in self._entries]
        entries = [e for e in entries if e[0]]
        entries.sort()
        self._entries = entries
        self._members = {k: -v for v, k in entries}

    def __len__(self) -> int:
        return len(self._entries)
