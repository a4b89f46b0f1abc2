"""The decoder/validator never raises, whatever the bytes (issue: poison input)."""
from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_models.events import EVENT_TYPES, Interaction
from streams.worker.decode import Rejected, decode_interaction

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
near_valid = st.fixed_dictionaries(
    {"user_id": st.one_of(st.text(max_size=300), st.integers(), st.none()),
     "item_id": st.one_of(st.text(max_size=300), st.integers()),
     "type": st.one_of(st.sampled_from(EVENT_TYPES), st.text(max_size=12)),
     "ts": st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=5))},
    optional={"event_id": json_values, "session_id": json_values, "context": json_values, "value": json_values},
)


def check(key, value):
    result = decode_interaction(key, value, "interactions", 0, 7, max_bytes=4096)
    assert isinstance(result, (Interaction, Rejected))
    if isinstance(result, Interaction):
        assert result.type in EVENT_TYPES and isinstance(result.ts, int) and not isinstance(result.ts, bool)
        assert key is not None and key.decode() == result.user_id
        assert result.event_id
    else:
        assert result.code and result.reason


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.one_of(st.none(), st.binary(max_size=40)), value=st.one_of(st.none(), st.binary(max_size=300)))
def test_arbitrary_bytes_never_raise(key, value):
    check(key, value)


@settings(max_examples=3000, deadline=None)
@given(value=json_values)
def test_arbitrary_json_never_raises(value):
    check(b"u", orjson.dumps(value))


@settings(max_examples=3000, deadline=None)
@given(record=near_valid, same_key=st.booleans())
def test_near_valid_records_never_raise(record, same_key):
    key = str(record["user_id"]).encode("utf-8", "surrogatepass") if same_key else b"other"
    try:
        value = orjson.dumps(record)
    except TypeError:  # e.g. integers beyond 64 bits: not representable, not our input
        return
    check(key, value)


def test_derived_ids_carry_the_record_timestamp_and_future_events_are_refused():
    value = orjson.dumps({"user_id": "u1", "item_id": "i", "type": "view", "ts": 1_700_000_000_000.0})
    ev = decode_interaction(b"u1", value, "interactions", 3, 42, record_ts=1_700_000_000_500)
    assert ev.event_id == "interactions/3/42@1700000000500"  # a recreated topic's offset 42 differs
    assert ev.ts == 1_700_000_000_000 and type(ev.ts) is int  # 1.0 is a JSON Schema integer
    ahead = orjson.dumps({"user_id": "u1", "item_id": "i", "type": "view", "ts": 1_700_003_600_001})
    rejected = decode_interaction(b"u1", ahead, "interactions", 3, 43, record_ts=1_700_000_000_000)
    assert isinstance(rejected, Rejected) and rejected.code == "ts_in_future"
    assert "1.0 h ahead of the record's timestamp" in rejected.reason
    skew = decode_interaction(b"u1", ahead, "interactions", 3, 43, record_ts=1_700_000_000_001)
    assert isinstance(skew, Interaction)  # exactly the allowed hour ahead
    assert isinstance(decode_interaction(b"u1", ahead, "interactions", 3, 43, record_ts=-1), Interaction)
    # a producer that stamps 0 or seconds is no clock to judge by: nothing is refused
    for odd in (0, 1_700_000_000):
        assert isinstance(decode_interaction(b"u1", ahead, "interactions", 3, 43, record_ts=odd), Interaction)


def test_valid_event_decodes_with_derived_event_id():
    ev = decode_interaction(b"u1", orjson.dumps({"user_id": "u1", "item_id": "i", "type": "skip",
                                                 "ts": 1_700_000_000_000}), "interactions", 3, 42)
    assert isinstance(ev, Interaction)
    assert ev.event_id == "interactions/3/42" and ev.is_negative


def test_a_ts_in_seconds_is_named_in_the_rejection_reason():
    from streams.worker.decode import interaction_problem

    seconds = {"user_id": "u1", "item_id": "i", "type": "view", "ts": 1_700_000_000}
    rejected = decode_interaction(b"u1", orjson.dumps(seconds), "interactions", 0, 1)
    assert isinstance(rejected, Rejected) and rejected.code == "schema"
    assert rejected.reason.startswith("schema: data.ts must be bigger than or equal to 788918400000")
    assert rejected.reason.endswith("`ts` looks like seconds; the contract wants epoch milliseconds")
    assert interaction_problem(seconds) == rejected.reason  # what `reco evaluate` says too
    for ts in (5, 788_918_399, 4_102_444_800, True, "1700000000"):  # ×1000 would not be a valid ts either
        reason = decode_interaction(b"u1", orjson.dumps({**seconds, "ts": ts}), "interactions", 0, 1).reason
        assert "seconds" not in reason, ts
    assert isinstance(decode_interaction(b"u1", orjson.dumps({**seconds, "ts": 1_700_000_000_000}),
                                         "interactions", 0, 1), Interaction)
