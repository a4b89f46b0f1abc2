"""Request context as the models see it: the device and the local time of day of an event.

Both come from the event itself (`context.device`, `ts`), never from the wall clock, so a
replay sees the same context as the live run."""
from __future__ import annotations

DAYPARTS = ("night", "morning", "afternoon", "evening")  # 0-6, 6-12, 12-18, 18-24 h


def hour_of_day(ts: int, utc_offset_hours: int = 0) -> int:
    return (ts // 3_600_000 + utc_offset_hours) % 24


def daypart(ts: int, utc_offset_hours: int = 0) -> str:
    return DAYPARTS[hour_of_day(ts, utc_offset_hours) // 6]


def scopes(device: str | None, ts: int, utc_offset_hours: int = 0) -> tuple[str, ...]:
    """Trending scopes an event counts in besides global and its category."""
    part = "@" + daypart(ts, utc_offset_hours)
    return ("@" + device, part) if device else (part,)  # the more specific first


def describe(scope: str) -> str:
    name = scope[1:]
    return f"popular in the {name}" if name in DAYPARTS else f"popular on {name}"


class EventScopes:
    """`scopes` of an interaction, as a picklable callable for the context trending model."""

    def __init__(self, utc_offset_hours: int = 0):
        self.utc_offset_hours = utc_offset_hours

    def __call__(self, ev) -> tuple[str, ...]:
        return scopes(ev.context.get("device"), ev.ts, self.utc_offset_hours)
