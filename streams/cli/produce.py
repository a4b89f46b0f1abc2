"""Send contract events (from JSONL, YOOCHOOSE or OTTO files) to the interactions topic, and the
catalogue records a contract JSONL file may carry to the items topic."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import orjson
from fastjsonschema import JsonSchemaValueException

from online_models.evaluation.datasets import detect_format, is_item_record, load_events, read_jsonl_numbered
from streams import clients
from streams.schemas import validator
from streams.settings import Settings
from streams.worker.decode import Rejected, decode_interaction


@dataclass(frozen=True)
class Invalid:
    where: str   # "line 7" (JSONL) or "event 7" (converted formats)
    reason: str


def read_records(file: str, fmt: str = "auto") -> list[tuple[str, dict]]:
    """(where, record) for every record of FILE, in file order: "line N" in contract JSONL (its
    line number), "event N" in a converted format (YOOCHOOSE, OTTO, MovieLens). Raises ValueError
    for a file that cannot be read as that format."""
    resolved = detect_format(file) if fmt == "auto" else fmt
    if resolved == "jsonl" and not Path(file).is_dir():  # a directory: load_events names the mistake
        return [(f"line {n}", r) for n, r in read_jsonl_numbered(file)]
    return [(f"event {n}", r) for n, r in enumerate(load_events(file, resolved, sort=False), 1)]


def with_event_ids(records: Iterable[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Every event without an `event_id` gets one derived from its content: "p-" and the 16 hex
    digits of an 8-byte BLAKE2b digest of its canonical JSON (sorted keys), then "-2", "-3"… for
    the second, third identical event in `records` (file order). Otherwise the worker would derive
    `topic/partition/offset@record-timestamp`, and the record timestamp is the time it was sent:
    the seeds of MF negative sampling and exploration, and so the lists, would differ between two
    runs of the same file. Events that carry an `event_id` (even an invalid one) and catalogue
    records are kept as they are."""
    seen: dict[str, int] = {}
    out = []
    for where, record in records:
        if "event_id" in record or is_item_record(record):
            out.append((where, record))
            continue
        digest = hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
        n = seen[digest] = seen.get(digest, 0) + 1
        out.append((where, {"event_id": f"p-{digest}" if n == 1 else f"p-{digest}-{n}", **record}))
    return out


def check_records(records: Iterable[tuple[str, dict]], max_event_ahead_s: float | None = 3600.0) -> list[Invalid]:
    """What the worker would dead-letter, found before anything is sent: each event goes through
    the worker's own decoding (schema, key, time checks, with now as the record time; None: no
    check against the clock, for an offline replay); each catalogue record through the item
    schema."""
    now_ms = None if max_event_ahead_s is None else int(time.time() * 1000)
    item_schema = validator("item")
    bad = []
    for where, record in records:
        if is_item_record(record):
            try:
                item_schema(orjson.loads(orjson.dumps(record)))  # a copy: the validator fills in defaults
            except JsonSchemaValueException as e:
                bad.append(Invalid(where, f"catalogue record: {e.message}"))
            continue
        user = record.get("user_id")
        key = user.encode() if isinstance(user, str) else b""
        decoded = decode_interaction(key, orjson.dumps(record), "produce", 0, 0, record_ts=now_ms,
                                     max_ahead_ms=int((max_event_ahead_s or 0) * 1000))
        if isinstance(decoded, Rejected):
            reason = decoded.reason  # a `ts` in seconds is named there, as in the worker's DLQ reason
            if "type" not in record and "item_id" in record:
                reason = "missing `type` (a catalogue record has no user_id, ts, event_id or session_id)"
            bad.append(Invalid(where, reason))
    return bad


class RateLimiter:
    """Paces a loop to `rate` iterations per second (None: unlimited)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        self.next_at += self.interval
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def produce_events(settings: Settings, events: Iterable[dict], rate: float | None = None,
                   retime: bool = False, on_sent: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> int:
    """Produce events keyed by user id (catalogue records: to the items topic, keyed by item id);
    `retime` stamps each event with the current time (demo). Returns the number delivered
    (confirmed by the broker); raises if any delivery failed. `should_stop` ends the sending early,
    also while waiting for room in the local queue."""
    producer = clients.producer(settings)
    failures: list[str] = []
    done = [0]

    def delivered(err, msg):
        if err is not None:
            failures.append(err.str())
        else:
            done[0] += 1

    stopped = should_stop or (lambda: False)
    limiter = RateLimiter(rate)
    sent = 0
    for event in events:
        if stopped():
            break
        if is_item_record(event):
            topic, key = settings.items_topic, str(event["item_id"])
        else:
            user = event.get("user_id")  # invalid events are sent as they are: the worker dead-letters them
            topic, key = settings.interactions_topic, None if user is None else str(user)
            if retime:
                event = {**event, "ts": int(time.time() * 1000)}
        while True:
            try:
                producer.produce(topic, key=key, value=orjson.dumps(event), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full (a slow or absent broker)
                if stopped():
                    break
                producer.poll(0.1)
        if stopped():
            break
        producer.poll(0)
        sent += 1
        if on_sent:
            on_sent(event)
        limiter.wait()
    undelivered = producer.flush(settings.delivery_timeout_s)
    if failures or undelivered:
        raise RuntimeError(f"{len(failures) + undelivered} of {sent} records were not delivered"
                           + (f": {failures[0]}" if failures else f" within {settings.delivery_timeout_s:g} s"))
    return done[0]
