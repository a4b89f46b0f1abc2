"""The interaction event as the engine sees it, and how much each type counts."""
from __future__ import annotations

from dataclasses import dataclass, field

EVENT_TYPES = ("view", "click", "skip", "add_to_cart", "purchase", "like", "dislike")
NEGATIVE_TYPES = frozenset({"skip", "dislike"})

# Strength of the signal each type carries; negatives push away.
TYPE_WEIGHT = {
    "view": 1.0,
    "click": 1.0,
    "like": 2.0,
    "add_to_cart": 3.0,
    "purchase": 4.0,
    "skip": -1.0,
    "dislike": -2.0,
}


@dataclass(frozen=True, slots=True)
class Interaction:
    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: int
    session_id: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    value: float | None = None

    @property
    def weight(self) -> float:
        return TYPE_WEIGHT[self.type]

    @property
    def is_negative(self) -> bool:
        return self.type in NEGATIVE_TYPES

    @classmethod
    def from_dict(cls, d: dict, default_event_id: str = "") -> "Interaction":
        return cls(
            event_id=d.get("event_id") or default_event_id,
            user_id=d["user_id"],
            item_id=d["item_id"],
            type=d["type"],
            ts=int(d["ts"]),  # JSON Schema's "integer" admits 1.0; the models do integer arithmetic
            session_id=d.get("session_id"),
            context=d.get("context") or {},
            value=d.get("value"),
        )

    def to_dict(self) -> dict:
        d = {"event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
             "type": self.type, "ts": self.ts}
        if self.session_id is not None:
            d["session_id"] = self.session_id
        if self.context:
            d["context"] = self.context
        if self.value is not None:
            d["value"] = self.value
        return d
