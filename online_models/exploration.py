"""Exploration: a Thompson-sampling bandit over candidate sources, deterministic given the input.

Slots from `explore_from` on are each handed to the bandit with probability `Blend.explore`;
the bandit samples a Beta posterior per source and the winning source puts its best item that
is not in the list yet into the slot. Feedback: an explored item the user then interacts with is
a success for its source, one they ignore is a failure. All randomness comes from blake2b of the
user id and their last event id — never Python's hash() or the wall clock — so a replay of the
same events shows the same lists.
"""
from __future__ import annotations

import hashlib
import random

from .events import Interaction
from .user_state import UserState

SOURCES = ("trending", "mf", "content", "covisit")


def draws(user: UserState, user_id: str) -> bytes:
    """64 pseudo-random bytes fixed by the user's id and last event (2 bytes per slot)."""
    return hashlib.blake2b(f"{user_id}\x1f{user.last_event_id}".encode(), digest_size=64).digest()


def slot_uniform(noise: bytes, slot: int) -> float:
    i = (2 * slot) % 64
    return (noise[i] << 8 | noise[i + 1]) / 65536.0


class SourceBandit:
    name = "bandit"

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {s: [1.0, 1.0] for s in SOURCES}  # Beta(alpha, beta)
        self._dirty: set[str] = set()

    def learn_one(self, ev: Interaction, user: UserState) -> None:
        """Credit the sources of the explored items the user was last shown."""
        if not user.explored:
            return
        for item, source in user.explored:
            ab = self.stats.setdefault(source, [1.0, 1.0])
            if item == ev.item_id and not ev.is_negative:
                ab[0] += 1.0
            else:
                ab[1] += 1.0
            self._dirty.add(source)
        user.explored = []  # one verdict per shown list

    def choose(self, noise: bytes, available: list[str]) -> str:
        rng = random.Random(noise)
        best, best_draw = available[0], -1.0
        for source in available:
            a, b = self.stats.get(source, (1.0, 1.0))
            draw = rng.betavariate(a, b)
            if draw > best_draw:
                best, best_draw = source, draw
        return best

    def export_dirty(self) -> dict[str, object]:
        rows: dict[str, object] = {s: self.stats[s] for s in self._dirty}
        self._dirty.clear()
        return rows

    def import_rows(self, rows: dict[str, object]) -> None:
        for source in sorted(rows):
            self.stats[source] = list(rows[source])  # type: ignore[arg-type]
