"""Exploration: a Thompson-sampling bandit over candidate sources, deterministic given the input.

Slots from `explore_from` on are each handed to the bandit with probability `Blend.explore`;
the bandit samples a Beta posterior per source and the winning source puts its best item that
is not in the list yet into the slot.

Feedback comes from the event stream alone, never from what happened to be published: for each
positive interaction, every source whose exploration pool (the candidates it would have put into
an explored slot just before the event) held the item scores a success, the others a failure.
That is full-information feedback — we can tell, for every arm, whether it would have paid off —
and it keeps learning a function of the input only. Publish points depend on batch boundaries
and timing, so learning from "what was shown" would make a replay after a crash diverge from an
uninterrupted run (docs/decisions/0003). All randomness comes from blake2b of the user id and
their last event id — never Python's hash() or the wall clock.
"""
from __future__ import annotations

import hashlib
import random
import zlib
from typing import Callable, Mapping

from online_models.events import Interaction
from online_models.state import rowkeys
from online_models.state.user_state import UserState

SOURCES = ("trending", "mf", "content", "covisit")
FEEDBACK_EVERY = 8  # judge the pools on one event in 8 (chosen by event id): the MF rank costs a
                    # pass over the catalogue, and a slowly moving Beta needs no more than this


def draws(user: UserState, user_id: str) -> bytes:
    """64 pseudo-random bytes fixed by the user's id and last event (2 bytes per slot)."""
    return hashlib.blake2b(f"{user_id}\x1f{user.last_event_id}".encode(), digest_size=64).digest()


def slot_uniform(noise: bytes, slot: int) -> float:
    i = (2 * slot) % 64
    return (noise[i] << 8 | noise[i + 1]) / 65536.0


class SourceBandit:
    name = "bandit"

    def __init__(self, offered: Callable[[UserState, str], Mapping[str, bool]] | None = None) -> None:
        self.stats: dict[str, list[float]] = {s: [1.0, 1.0] for s in SOURCES}  # Beta(alpha, beta)
        self._dirty: set[str] = set()
        # (user before the event, item) -> {source: was the item in that source's pool}
        self.offered = offered

    def learn_one(self, ev: Interaction, user: UserState) -> None:
        """One trial per source that had a pool for this user: success if the pool held the item."""
        if ev.is_negative or self.offered is None:
            return
        if zlib.crc32(ev.event_id.encode()) % FEEDBACK_EVERY:  # deterministic, unsalted sample
            return
        for source, hit in self.offered(user, ev.item_id).items():
            ab = self.stats.setdefault(source, [1.0, 1.0])
            ab[0 if hit else 1] += 1.0
            self._dirty.add(source)

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
        rows: dict[str, object] = {rowkeys.key(s): self.stats[s] for s in self._dirty}
        self._dirty.clear()
        return rows

    def mark_all_dirty(self) -> None:
        self._dirty.update(self.stats)

    def import_rows(self, rows: dict[str, object]) -> None:
        for key in sorted(filter(rowkeys.is_data, rows)):
            (source,) = rowkeys.parts(key)
            self.stats[source] = list(rows[key])  # type: ignore[arg-type]
