"""Live catalogue coverage over a sliding window of two buckets."""
from __future__ import annotations

import time
from typing import Iterable


class CoverageWindow:
    """Distinct items recommended / distinct items interacted with, over the last 1–2 windows."""

    def __init__(self, window_s: float = 600.0):
        self.window_s = window_s
        self._started = time.monotonic()
        self._prev: tuple[set[str], set[str]] = (set(), set())
        self._cur: tuple[set[str], set[str]] = (set(), set())

    def _roll(self) -> None:
        if time.monotonic() - self._started >= self.window_s:
            self._prev, self._cur = self._cur, (set(), set())
            self._started = time.monotonic()

    def seen(self, item_id: str) -> None:
        self._roll()
        self._cur[1].add(item_id)

    def recommended(self, item_ids: Iterable[str]) -> None:
        self._cur[0].update(item_ids)

    def ratio(self) -> float:
        self._roll()
        seen = self._cur[1] | self._prev[1]
        if not seen:
            return 0.0
        recommended = self._cur[0] | self._prev[0]
        return len(recommended & seen) / len(seen)
