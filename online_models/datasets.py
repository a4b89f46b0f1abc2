"""Readers that turn public interaction logs into contract events, time-ordered.

Formats: contract JSONL (one interaction per line), the YOOCHOOSE clicks TSV
(`SessionId ItemId Time`, seconds), and OTTO sessions JSONL (`{session, events[{aid, ts, type}]}`).
A session is the user id for both public sets.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import orjson

OTTO_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}


def detect_format(path: str | Path) -> str:
    path = Path(path)
    with path.open("rb") as f:
        first = next((line for line in f if line.strip()), b"")  # blank lines are skipped by every reader
    if not first:
        raise ValueError(f"{path}: empty file")
    if first.startswith(b"SessionId"):
        return "yoochoose"
    if first.lstrip().startswith(b"{"):
        try:
            record = orjson.loads(first)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{path}: the first line is not JSON ({e})") from None
        return "otto" if "events" in record and "session" in record else "jsonl"
    raise ValueError(f"{path}: unrecognised format (expected contract JSONL, YOOCHOOSE TSV or OTTO JSONL)")


def read_yoochoose(path: str | Path) -> list[dict]:
    events = []
    with Path(path).open(newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            try:
                session, item, seconds = row
                ts = int(round(float(seconds) * 1000))
            except ValueError:
                raise ValueError(f"{path} line {line}: expected SessionId<TAB>ItemId<TAB>Time (seconds), "
                                 f"got {chr(9).join(row)[:80]!r}") from None
            events.append({"event_id": f"yc-{len(events)}", "user_id": session, "item_id": item,
                           "type": "click", "ts": ts, "session_id": session})
    return events


def read_otto(path: str | Path) -> list[dict]:
    events = []
    with Path(path).open("rb") as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                record = orjson.loads(text)
                sid = str(record["session"])
                for n, e in enumerate(record["events"]):
                    events.append({"event_id": f"otto-{sid}-{n}", "user_id": sid, "item_id": str(e["aid"]),
                                   "type": OTTO_TYPES[e["type"]], "ts": int(e["ts"]), "session_id": sid})
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path} line {line}: not an OTTO session "
                                 f'({{"session", "events": [{{"aid", "ts", "type"}}]}}): {type(e).__name__} {e}') from None
    return events


def read_jsonl(path: str | Path) -> list[dict]:
    return [record for _, record in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for every non-blank line; a line that is not a JSON object is an error."""
    out = []
    with Path(path).open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise ValueError(f"{path} line {n}: not JSON ({e})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {n}: expected a JSON object, got {type(record).__name__}")
            out.append((n, record))
    return out


EVENT_ONLY_FIELDS = ("user_id", "ts", "event_id", "session_id")


def is_item_record(record: dict) -> bool:
    """Contract JSONL may interleave catalogue records (`item_id`, no `type` and none of an
    event's own fields) with interactions; a line with `user_id` but no `type` is a broken event."""
    return "type" not in record and "item_id" in record and not any(f in record for f in EVENT_ONLY_FIELDS)


def split_items(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(interactions, catalogue records), each in file order."""
    items = [r for r in records if is_item_record(r)]
    return [r for r in records if not is_item_record(r)], items


READERS = {"yoochoose": read_yoochoose, "otto": read_otto, "jsonl": read_jsonl}


def load_events(path: str | Path, fmt: str | None = None, sort: bool = True) -> list[dict]:
    """Contract event dicts from any supported file; time-ordered (stable) unless sort=False."""
    events = READERS[fmt or detect_format(path)](path)
    return sort_events(events, path) if sort else events


def sort_events(events: list[dict], path: str | Path = "input") -> list[dict]:
    """Time order (stable: a file's order among equal times; catalogue records, without ts, first)."""
    odd = next((e for e in events if not isinstance(e.get("ts", 0), (int, float))), None)
    if odd is not None:
        raise ValueError(f"{path}: `ts` must be a number (epoch ms) on every line; found {odd['ts']!r} "
                         f"(event {odd.get('event_id') or odd.get('user_id')!r})")
    return sorted(events, key=lambda e: e.get("ts", 0))


def iter_jsonl_lines(events: list[dict]) -> Iterator[bytes]:
    for e in events:
        yield orjson.dumps(e)
