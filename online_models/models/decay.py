"""Forward exponential decay (Cormode et al.): weights grow with event time instead of old
ones shrinking, so the ranking of decayed sums never needs a sweep over all items.

A weight added at time t counts 2**((t - landmark) / half_life). Ranking by these values
equals ranking by properly decayed values at any query time. When the exponent gets large the
landmark moves forward and every stored value is rescaled — driven by event time only, so the
result is deterministic for a given input.
"""
from __future__ import annotations

from online_models.state import rowkeys

RESCALE_EXPONENT = 60.0  # 2**60 stays far from float overflow and keeps 15 digits of precision


class ForwardDecay:
    __slots__ = ("half_life_ms", "landmark")

    def __init__(self, half_life_ms: float, landmark: int | None = None):
        self.half_life_ms = float(half_life_ms)
        self.landmark = landmark

    def factor(self, ts: int) -> float:
        """Weight multiplier of an event at `ts`; sets the landmark at the first event."""
        if self.landmark is None:
            self.landmark = ts
        return 2.0 ** ((ts - self.landmark) / self.half_life_ms)

    def needs_rescale(self, ts: int) -> bool:
        return self.landmark is not None and (ts - self.landmark) / self.half_life_ms > RESCALE_EXPONENT

    def rescale_to(self, ts: int) -> float:
        """Move the landmark to `ts`; returns the multiplier to apply to stored values."""
        assert self.landmark is not None
        mult = 2.0 ** (-(ts - self.landmark) / self.half_life_ms)
        self.landmark = ts
        return mult

    # -- persistence: the landmark travels with a model's dirty rows under one reserved key --
    LANDMARK_KEY = rowkeys.LANDMARK

    def stamp(self, rows: dict[str, object]) -> dict[str, object]:
        """Add the landmark to a non-empty export (values are only meaningful against it)."""
        if rows:
            rows[self.LANDMARK_KEY] = self.landmark
        return rows

    def take_landmark(self, rows: dict[str, object]) -> None:
        """Pop the landmark out of imported rows and adopt it."""
        landmark = rows.pop(self.LANDMARK_KEY, None)
        if landmark is not None:
            self.landmark = landmark  # type: ignore[assignment]
