"""Per-user state: what the engine remembers about one user, bounded in size.

State is plain data (lists and dicts of str/int/float) serialized as JSON in a fixed field
order; dicts keep their history order, so the same input gives byte-equal bytes, which the
recovery tests rely on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import orjson

from online_models.events import Interaction
from online_models.state import consumed

SESSION_GAP_MS = 30 * 60 * 1000  # a new implicit session after 30 minutes of silence
MAX_RECENT = 50
MAX_SESSION = 50
MAX_PURCHASED = 500
MAX_SKIPPED = 100
MAX_EVENT_IDS = 64


@dataclass(slots=True)
class UserState:
    recent: list[list] = field(default_factory=list)      # [[item_id, ts, type], ...] oldest first
    session_id: str = ""
    session_items: list[str] = field(default_factory=list)  # items of the current session, in order
    purchased: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # item_id -> ts of the last skip/dislike
    counts: dict[str, int] = field(default_factory=dict)   # event type -> count
    taste: dict[str, float] = field(default_factory=dict)  # category -> affinity (content model)
    event_ids: list[str] = field(default_factory=list)     # recent event ids, for idempotency
    last_ts: int = 0
    last_event_id: str = ""
    last_context: dict[str, str] = field(default_factory=dict)
    shown: list[str] = field(default_factory=list)          # item ids of the last published list
    factors: list[float] = field(default_factory=list)      # online MF user vector (empty = not learned yet)
    returns: int = 0         # positive events on an item already in `recent` or `skipped`: coming back
    older: str = consumed.EMPTY  # items that left `recent`/`skipped`, as a Bloom filter (consumed.py)

    # -- learning -------------------------------------------------------------------------
    def has_seen(self, event_id: str) -> bool:
        return event_id in self.event_ids

    def had_recently(self, item_id: str) -> bool:
        """Whether the item is in the user's recent items or skips (exactly known, unlike `older`)."""
        return item_id in self.skipped or any(row[0] == item_id for row in self.recent)

    def had_before(self) -> Callable[[str], bool]:
        """Whether the user ever had an item: their recent items and skips (exactly), the older
        ones (by their filter)."""
        had = {row[0] for row in self.recent}
        had.update(self.skipped)
        older = consumed.holds(self.older)
        return lambda item: item in had or older(item)

    def positives(self) -> int:
        """How many positive events the user has had (every type but skip and dislike)."""
        counts = self.counts
        return sum(counts.values()) - counts.get("skip", 0) - counts.get("dislike", 0)

    def starts_new_session(self, ev: Interaction) -> bool:
        if ev.session_id is not None:
            return ev.session_id != self.session_id
        return not self.session_items or ev.ts - self.last_ts > SESSION_GAP_MS

    def apply(self, ev: Interaction) -> None:
        """Record one event. The caller has already checked `has_seen`."""
        if self.starts_new_session(ev):
            self.session_id = ev.session_id if ev.session_id is not None else f"implicit-{ev.ts}"
            self.session_items = []
        self.counts[ev.type] = self.counts.get(ev.type, 0) + 1
        if ev.is_negative:
            self.skipped.pop(ev.item_id, None)
            self.skipped[ev.item_id] = ev.ts
            if len(self.skipped) > MAX_SKIPPED:
                oldest = next(iter(self.skipped))
                del self.skipped[oldest]
                self.older = consumed.add(self.older, (oldest,))
        else:
            if self.had_recently(ev.item_id):
                self.returns += 1
            self.recent.append([ev.item_id, ev.ts, ev.type])
            if len(self.recent) > MAX_RECENT:
                self.older = consumed.add(self.older, (row[0] for row in self.recent[:-MAX_RECENT]))
                del self.recent[:-MAX_RECENT]
            self.session_items.append(ev.item_id)
            del self.session_items[:-MAX_SESSION]
            self.skipped.pop(ev.item_id, None)  # coming back to an item forgives the skip
            if ev.type == "purchase" and ev.item_id not in self.purchased:
                self.purchased.append(ev.item_id)
                del self.purchased[:-MAX_PURCHASED]
        self.event_ids.append(ev.event_id)
        del self.event_ids[:-MAX_EVENT_IDS]
        self.last_ts = max(self.last_ts, ev.ts)
        self.last_event_id = ev.event_id
        if ev.context:
            self.last_context = dict(ev.context)

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())  # field order is fixed; dict order is history

    @classmethod
    def from_bytes(cls, raw: bytes) -> "UserState":
        d = orjson.loads(raw)
        return cls(**{k: v for k, v in d.items() if k in cls.__slots__})
