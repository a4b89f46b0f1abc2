"""Retention (issue 15): with RECO_USER_TTL_DAYS, a user idle past the TTL in event time is
deleted as on forget — state row, changelog tombstone, `recommendations` tombstone — and a run
killed with SIGKILL inside a checkpoint then restored elsewhere ends byte-equal to an
uninterrupted one. Real broker, real RocksDB, real processes."""
from __future__ import annotations

import orjson
import pytest
from helpers import latest_by_key, produce, read_all, wait_until
from test_recovery_changelog import make_settings, records
from workers import spawn, stop, wait_caught_up

from online_models.evaluation.synthetic import interactions
from online_models.state.pseudonyms import Pseudonyms
from streams.cli.state_dump import dump_state
from streams.clients import ensure_topics

KEY = "test-retention-key-5d02b9e14c"
ENV = {"RECO_USER_TTL_DAYS": "1", "RECO_PSEUDONYMIZE_KEY": KEY}
DAY = 86_400_000
T0 = 1_700_000_000_000
IDLE, ACTIVE = "idle-7e2f", [f"active-{n}" for n in range(4)]


def _event(n: int, user: str, ts: int) -> dict:
    return {"event_id": f"ev{n}", "user_id": user, "item_id": f"i{n % 7}", "type": "view", "ts": ts}


def _compacted(msgs) -> dict[bytes, bytes]:
    view: dict[bytes, bytes] = {}
    for m in msgs:
        if m.value() is None:
            view.pop(m.key(), None)
        else:
            view[m.key()] = m.value()
    return view


def test_a_user_idle_past_the_ttl_disappears_from_state_changelog_and_recommendations(broker, tmp_path):
    s = make_settings(broker, tmp_path, partitions=1)
    ensure_topics(s)
    # Day 0: everybody; then only the active users, every two hours for three days (event time).
    first = [_event(n, u, T0 + n) for n, u in enumerate([IDLE] * 3 + ACTIVE)]
    later = [_event(100 + n, ACTIVE[n % 4], T0 + (n + 1) * 2 * 3600_000) for n in range(36)]
    ends = produce(s, records(first))
    proc = spawn(s, env=ENV)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    ids = Pseudonyms(KEY)
    dumped = lambda: orjson.loads(dump_state(s.state_dir, s.interactions_topic, include_models=True))
    assert ids.pseudonym(IDLE) in dumped()["users"], "the idle user was stored before: test is void"
    ends = produce(s, records(later))
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    wait_until(lambda: ids.pseudonym(IDLE) not in dumped()["users"], timeout=10, what="the idle user deleted")
    assert stop(proc) == 0

    dump = dumped()
    assert set(dump["users"]) == {ids.pseudonym(u) for u in ACTIVE}, "active users are kept"
    assert set(dump["retention"]["0"]["last_ts"]) == {ids.pseudonym(u) for u in ACTIVE}
    assert dump["retention"]["0"]["clock"] == later[-1]["ts"]
    changelog = read_all(s, s.changelog_topic, idle_s=0.5, timeout=60)
    row = b"u\x00" + ids.pseudonym(IDLE).encode()
    assert any(m.key() == row and m.value() for m in changelog)
    assert row not in _compacted(changelog), "a changelog tombstone for the idle user's row"
    assert not any(k.startswith(b"r\x00i") and ids.pseudonym(IDLE).encode() in k for k in _compacted(changelog))
    recs = read_all(s, s.recommendations_topic, idle_s=0.5, timeout=60)
    assert any(m.key() == IDLE.encode() and m.value() for m in recs), "the idle user had a list"
    assert set(latest_by_key(recs)) == set(ACTIVE), "the idle user's list is withdrawn (tombstone)"


N_EVENTS = 12_000


@pytest.fixture(scope="module")
def events():
    # ~200 ms of event time between events: 40 min in all, a TTL of ~3 min expires many users.
    return interactions(N_EVENTS, n_users=1500, n_items=300, seed=41)


TTL_ENV = {"RECO_USER_TTL_DAYS": "0.002", "RECO_PSEUDONYMIZE_KEY": KEY, "RECO_BATCH_SIZE": "200"}


def test_with_a_ttl_a_kill9_and_a_restore_elsewhere_end_byte_equal_to_an_uninterrupted_run(broker, tmp_path, events):
    ref = make_settings(broker, tmp_path / "ref")
    ensure_topics(ref)
    ends = produce(ref, records(events))
    proc = spawn(ref, env=TTL_ENV)
    wait_caught_up([ref.state_dir], ref.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    expected = dump_state(ref.state_dir, ref.interactions_topic, include_models=True)
    expected_recs = latest_by_key(read_all(ref, ref.recommendations_topic, idle_s=0.5, timeout=60))
    assert 0 < len(orjson.loads(expected)["users"]) < len({e["user_id"] for e in events}) / 2, \
        "most users expired, not all: the TTL is tested"

    s = make_settings(broker, tmp_path / "run")
    ensure_topics(s)
    ends = produce(s, records(events))
    dir_a, dir_b = tmp_path / "host-a", tmp_path / "host-b"
    a = spawn(s, dir_a, env={**TTL_ENV, "RECO_FAULT_KILL_IN_CHECKPOINT": "2"})
    assert a.wait(120) == -9, "the fault point must SIGKILL the worker"
    b = spawn(s, dir_b, env=TTL_ENV, log=tmp_path / "b.log")  # a new host restores from the changelog
    wait_caught_up([dir_b], s.interactions_topic, ends, procs=[b])
    assert stop(b) == 0
    assert "restored partition" in (tmp_path / "b.log").read_text()
    assert dump_state(dir_b, s.interactions_topic, include_models=True) == expected
    assert latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.5, timeout=60)) == expected_recs
