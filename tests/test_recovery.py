"""Exactly-once effect under crashes, rebalances and lost disks — real broker, real processes.

Each scenario's final recommendations (compacted view) and `reco state dump` must equal those of
an uninterrupted run over the same input, and per-user event counters must add up to exactly
the number of valid events: nothing lost, nothing applied twice."""
from __future__ import annotations

import random
import shutil
import time
import uuid

import orjson
import pytest
from helpers import latest_by_key, produce, read_all, wait_until
from workers import kill9, progress, spawn, stop, wait_caught_up

from online_models.evaluation.synthetic import interactions
from streams.cli.state_dump import dump_state
from streams.clients import ensure_topics
from streams.settings import Settings

N_EVENTS = 100_000
PARTITIONS = 4


def make_settings(broker, root, **overrides) -> Settings:
    tag = uuid.uuid4().hex[:8]
    values = dict(bootstrap_servers=broker.bootstrap, group_id=f"g-{tag}",
                  interactions_topic=f"in-{tag}", items_topic=f"items-{tag}",
                  recommendations_topic=f"recs-{tag}", dlq_topic=f"dlq-{tag}", control_topic=f"ctl-{tag}",
                  changelog_topic=f"chg-{tag}", state_dir=root / tag, partitions=PARTITIONS,
                  session_timeout_ms=2000, metrics_port=0)
    return Settings(**{**values, **overrides})


def records(events):
    return [(e["user_id"], e) for e in events]


def users_of(dump: bytes) -> dict:
    return orjson.loads(dump)["users"]


def applied_events(dump: bytes) -> int:
    return sum(sum(u["counts"].values()) for u in users_of(dump).values())


def outputs(s: Settings, state_dir) -> tuple[dict, bytes]:
    return latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.5, timeout=120)), \
        dump_state(state_dir, s.interactions_topic)


@pytest.fixture(scope="module")
def events():
    return interactions(N_EVENTS, n_users=5000, n_items=800, seed=11)


@pytest.fixture(scope="module")
def reference(broker, tmp_path_factory, events):
    """The uninterrupted run everything is compared with."""
    s = make_settings(broker, tmp_path_factory.mktemp("ref"))
    ensure_topics(s)
    ends = produce(s, records(events))
    proc = spawn(s)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    view, dump = outputs(s, s.state_dir)
    assert applied_events(dump) == N_EVENTS
    return view, dump


def test_kill9_mid_load_then_restart_equals_uninterrupted_run(broker, tmp_path, events, reference):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    ends = produce(s, records(events))
    log = tmp_path / "worker.log"
    proc = spawn(s, log=log)
    wait_until(lambda: progress([s.state_dir], s.interactions_topic) >= N_EVENTS * 0.4, timeout=120,
               what="40% checkpointed")
    kill9(proc)
    assert progress([s.state_dir], s.interactions_topic) < N_EVENTS, "killed too late to test anything"
    proc = spawn(s, log=log)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    view, dump = outputs(s, s.state_dir)
    assert applied_events(dump) == N_EVENTS, "events lost or applied twice"
    assert dump == reference[1]
    assert view == reference[0]


def test_rebalance_one_two_one_workers_under_load(broker, tmp_path, events, reference):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    dir_a, dir_b = tmp_path / "host-a", tmp_path / "host-b"   # two hosts: no shared disk
    ends: dict[int, int] = {}
    thirds = [events[i * N_EVENTS // 3:(i + 1) * N_EVENTS // 3] for i in range(3)]

    a = spawn(s, dir_a, log=tmp_path / "a.log")
    ends.update(produce(s, records(thirds[0])))
    wait_until(lambda: progress([dir_a], s.interactions_topic) > 0, timeout=60, what="worker a started")
    b = spawn(s, dir_b, log=tmp_path / "b.log")
    ends.update(produce(s, records(thirds[1])))
    wait_until(lambda: progress([dir_b], s.interactions_topic) > 0, timeout=60, what="worker b took partitions")
    assert stop(a) == 0                                          # back to one worker
    ends.update(produce(s, records(thirds[2])))
    wait_caught_up([dir_b], s.interactions_topic, ends, procs=[b])
    assert stop(b) == 0
    assert "restored partition" in (tmp_path / "b.log").read_text(), "b must take over a's partitions from the changelog"
    view, dump = outputs(s, dir_b)
    assert applied_events(dump) == N_EVENTS
    assert dump == reference[1]
    assert view == reference[0]


def test_wiped_state_is_restored_from_the_changelog(broker, tmp_path, events, reference):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    half = N_EVENTS // 2
    ends = produce(s, records(events[:half]))
    proc = spawn(s)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    shutil.rmtree(s.state_dir)                                   # the disk is gone
    ends = produce(s, records(events[half:]))
    restarted_ms = int(time.time() * 1000)
    log = tmp_path / "worker.log"
    proc = spawn(s, log=log)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    assert "restored partition" in log.read_text()
    # Restored, not rebuilt by replaying the input: no list of the first half was re-published.
    second_half_starts = events[half]["ts"]
    republished = [m for m in read_all(s, s.recommendations_topic, idle_s=0.5, timeout=120)
                   if m.timestamp()[1] >= restarted_ms
                   and orjson.loads(m.value())["trigger"]["ts"] < second_half_starts]
    assert republished == []
    view, dump = outputs(s, s.state_dir)
    assert applied_events(dump) == N_EVENTS, "restored state must continue exactly"
    assert dump == reference[1]
    assert view == reference[0]


def test_one_percent_poison_goes_to_dlq_valid_ones_match_a_clean_run(broker, tmp_path, events, reference):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    rng = random.Random(5)
    poison_kinds = [b"{oops", b"\xff\xfe", b"[]", b"null", b'{"user_id": "x"}',
                    orjson.dumps({"user_id": "u", "item_id": "i", "type": "warp", "ts": 1_700_000_000_000}),
                    orjson.dumps({"user_id": "u", "item_id": "i", "type": "view", "ts": 10**16}),
                    orjson.dumps({"user_id": "u", "item_id": "i", "type": "view", "ts": "soon"})]
    mixed, n_poison = [], 0
    for e in events:
        mixed.append((e["user_id"], e))
        if rng.random() < 0.01:
            key = rng.choice([e["user_id"].encode(), None])
            mixed.append((key, rng.choice(poison_kinds)))
            n_poison += 1
    ends = produce(s, mixed)
    proc = spawn(s)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    view, dump = outputs(s, s.state_dir)
    dlq = read_all(s, s.dlq_topic, idle_s=0.5)
    assert len(dlq) == n_poison > 500
    assert all(dict(m.headers()).get("dlq.reason") for m in dlq)
    assert applied_events(dump) == N_EVENTS
    assert users_of(dump) == users_of(reference[1])
    assert view == reference[0]
