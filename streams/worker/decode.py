"""decode → validate: raw Kafka bytes to an Interaction, or a rejection with a reason."""
from __future__ import annotations

from dataclasses import dataclass

import fastjsonschema
import orjson

from online_models.events import Interaction
from streams.schemas import validator

PLAUSIBLE_RECORD_TS = 788_918_400_000  # 1995-01-01 in ms, the schema's lower bound for `ts`
SECONDS_TS = (788_918_400, 4_102_444_800)  # the schema's ts range (1995..2100) in seconds: a unit mistake
SECONDS_HINT = " — `ts` looks like seconds; the contract wants epoch milliseconds"
CONTROL_HEADER = "reco.control"   # on `interactions`: the record is a control marker, not an event
# Marker header values = the request's `action` (schemas/user-control.v1.json).
FORGET_USER = b"forget_user"
OPT_OUT = b"opt_out"
OPT_IN = b"opt_in"
CONTROL_ACTIONS = (FORGET_USER, OPT_OUT, OPT_IN)


@dataclass(frozen=True, slots=True)
class UserControl:
    """A request about one user, applied in order with their events (see streams/serve/app.py):
    forget_user drops everything about them, opt_out too and keeps nothing from then on,
    opt_in ends an opt-out."""
    user_id: str
    action: str = "forget_user"


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str      # bounded set: used as a metric label and the DLQ reason code
    reason: str    # human-readable detail


_validate_interaction = validator("interaction")
_validate_control = validator("user-control")  # accepts every forget-user.v1 value too


def dlq_headers(code: str, reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter record (schemas/dead-letter.v1.json)."""
    return [("dlq.reason", reason.encode()), ("dlq.reason.code", code.encode()),
            ("dlq.source.topic", topic.encode()), ("dlq.source.partition", str(partition).encode()),
            ("dlq.source.offset", str(offset).encode())]


def _schema_error(validate, record: object, prefix: str) -> Rejected | None:
    """Run a compiled schema validator; any failure, even a validator bug, becomes a Rejected."""
    try:
        validate(record)
    except fastjsonschema.JsonSchemaValueException as e:
        return Rejected("schema", f"{prefix}: {e.message}")
    except Exception as e:  # a validator bug must not kill the worker
        return Rejected("schema", f"{prefix}: {type(e).__name__}: {e}")
    return None


def _interaction_schema_error(record: dict) -> Rejected | None:
    """The interaction schema's rejection; a `ts` that would be valid in milliseconds (×1000) is
    named as seconds, the commonest unit mistake."""
    rejected = _schema_error(_validate_interaction, record, "schema")
    if rejected is not None:
        ts = record.get("ts")
        if isinstance(ts, (int, float)) and not isinstance(ts, bool) and SECONDS_TS[0] <= ts < SECONDS_TS[1]:
            return Rejected(rejected.code, rejected.reason + SECONDS_HINT)
    return rejected


def interaction_problem(record: object) -> str | None:
    """Why a decoded record is not a valid interaction (the worker's `schema` rejection), or None."""
    rejected = _interaction_schema_error(record) if isinstance(record, dict) else \
        _schema_error(_validate_interaction, record, "schema")
    return None if rejected is None else rejected.reason


def control_kind(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    for name, value in headers or ():
        if name == CONTROL_HEADER:
            return value or b""
    return None


def decode_control(key: bytes | None, value: bytes | None, marker: bytes | None = None) -> UserControl | Rejected:
    """A user-control request (schemas/user-control.v1.json, which forget-user.v1 values also
    satisfy); `marker`: the `reco.control` header it came with, which must name the same
    action. Never raises."""
    try:
        record = orjson.loads(value or b"null")
    except orjson.JSONDecodeError as e:
        return Rejected("invalid_json", f"invalid JSON: {e}")
    rejected = _schema_error(_validate_control, record, "user-control schema")
    if rejected is not None:
        return rejected
    if key is None or key != record["user_id"].encode():
        return Rejected("key_mismatch", "control request key does not match user_id")
    if marker is not None and marker != record["action"].encode():
        return Rejected("schema", f"control marker {marker[:40]!r} does not match the request's action "
                                  f"{record['action']!r}")
    return UserControl(record["user_id"], record["action"])


decode_forget = decode_control  # the name serve_guard knows; one decoder for every action


def decode_interaction(key: bytes | None, value: bytes | None, topic: str, partition: int,
                       offset: int, max_bytes: int = 64 * 1024, record_ts: int | None = None,
                       max_ahead_ms: int = 3_600_000, now_ms: int | None = None) -> Interaction | Rejected:
    """Never raises on any input: every failure becomes a Rejected.

    `record_ts` is the Kafka record's timestamp (None or negative: not available). It is part of
    a derived event id — `topic/partition/offset@record_ts` — so a recreated topic whose offsets
    start again at 0 does not repeat the ids of events already applied; and an event more than
    `max_ahead_ms` ahead of it is refused: its time would move every decayed model's clock forward
    and silence all the events after it (checked only against a plausible record timestamp, one
    after 1995-01-01 in ms). Both depend on the record only, so replays agree. A producer can set
    the record timestamp to 2099 too: for producer-stamped records (CreateTime) the caller passes
    `now_ms`, the wall clock, and an event more than `max_ahead_ms` ahead of it is refused as well
    — the one check here a replay can decide differently, and only for such events."""
    if value is None:
        return Rejected("not_an_object", "value is null")
    if len(value) > max_bytes:
        return Rejected("oversized", f"value is {len(value)} bytes, limit {max_bytes}")
    if key is None:
        return Rejected("null_key", "key is null; interactions must be keyed by user_id")
    try:
        text_key = key.decode("utf-8")
        value.decode("utf-8")
    except UnicodeDecodeError as e:
        return Rejected("invalid_utf8", f"not UTF-8: {e.reason} at byte {e.start}")
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        return Rejected("invalid_json", f"invalid JSON: {e}")
    if not isinstance(record, dict):
        return Rejected("not_an_object", f"value is a JSON {type(record).__name__}, expected an object")
    rejected = _interaction_schema_error(record)
    if rejected is not None:
        return rejected
    if record["user_id"] != text_key:
        return Rejected("key_mismatch", "key does not match user_id (partitioning must be by user)")
    stamped = record_ts is not None and record_ts >= 0
    plausible = stamped and record_ts >= PLAUSIBLE_RECORD_TS  # not a producer that stamps 0 or seconds
    if plausible and record["ts"] - record_ts > max_ahead_ms:
        return Rejected("ts_in_future", f"ts {int(record['ts'])} is {(record['ts'] - record_ts) / 3_600_000:.1f} h "
                                        f"ahead of the record's timestamp {record_ts} (limit {max_ahead_ms // 1000} s)")
    if now_ms is not None and record["ts"] - now_ms > max_ahead_ms:
        return Rejected("ts_in_future", f"ts {int(record['ts'])} is {(record['ts'] - now_ms) / 3_600_000:.1f} h "
                                        f"ahead of the clock at consume time, and the record's timestamp was set "
                                        f"by its producer (limit {max_ahead_ms // 1000} s)")
    derived = f"{topic}/{partition}/{offset}@{record_ts}" if stamped else f"{topic}/{partition}/{offset}"
    return Interaction.from_dict(record, default_event_id=derived)
