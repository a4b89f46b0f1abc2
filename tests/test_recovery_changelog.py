"""Exactly-once across the changelog's lifecycle — real broker, real processes (decision 0014):
a SIGKILL inside a checkpoint's changelog writes followed by a restore elsewhere and a failover,
an input topic and a changelog deleted and created again, and a changelog that cannot hold the
whole state. Each ends equal to an uninterrupted run, or refuses loudly."""
from __future__ import annotations

import shutil
import time

import orjson
import pytest
import test_recovery as recovery
from confluent_kafka import Producer
from helpers import event, latest_by_key, produce, read_all, wait_until
from workers import spawn, stop, wait_caught_up

from online_models.evaluation.synthetic import interactions
from streams.cli.state_dump import dump_state
from streams.clients import admin, ensure_topics
from streams.settings import Settings
from streams.worker.changelog import COMMIT, ROWS, SNAPSHOT

N_EVENTS = 20_000
PARTITIONS = 2


def make_settings(broker, root, **overrides) -> Settings:
    return recovery.make_settings(broker, root, **{"partitions": PARTITIONS, **overrides})


def run_to_the_end(s: Settings, evs: list[dict], **spawn_args) -> dict[int, int]:
    """Produce `evs`, run a worker until it checkpointed all of them, stop it; the end offsets."""
    ends = produce(s, records(evs))
    proc = spawn(s, **spawn_args)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    return ends


def records(events):
    return [(e["user_id"], e) for e in events]


def users(dump: bytes) -> dict:
    return orjson.loads(dump)["users"]


def applied(dump: bytes) -> int:
    return sum(sum(u["counts"].values()) for u in users(dump).values())


def changelog(s: Settings) -> dict[int, list]:
    out: dict[int, list] = {}
    for m in read_all(s, s.changelog_topic, idle_s=0.5, timeout=60):
        out.setdefault(m.partition(), []).append(m)
    return out


def recreate(s: Settings, topic: str) -> None:
    """Delete a topic (no client may be using it) and create it again empty."""
    a = admin(s)
    a.delete_topics([topic])[topic].result()
    wait_until(lambda: topic not in a.list_topics(timeout=5).topics, what=f"{topic} deleted")
    time.sleep(1)
    ensure_topics(s)


@pytest.fixture(scope="module")
def events():
    return interactions(N_EVENTS, n_users=2000, n_items=400, seed=23)


@pytest.fixture(scope="module")
def reference(broker, tmp_path_factory, events):
    s = make_settings(broker, tmp_path_factory.mktemp("ref"))
    ensure_topics(s)
    ends = produce(s, records(events))
    proc = spawn(s)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    dump = dump_state(s.state_dir, s.interactions_topic)
    assert applied(dump) == N_EVENTS
    return latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.5, timeout=60)), dump


def test_kill9_inside_a_checkpoint_then_restore_failover_and_catch_up_equal_an_uninterrupted_run(
        broker, tmp_path, events, reference):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    ends = produce(s, records(events))
    dir_a, dir_b = tmp_path / "host-a", tmp_path / "host-b"
    a = spawn(s, dir_a, log=tmp_path / "a.log", env={"RECO_FAULT_KILL_IN_CHECKPOINT": "4"})
    assert a.wait(120) == -9, "the fault point must SIGKILL the worker"
    # The kill left an interval's first rows on the changelog without its commit marker.
    partial = 0
    for msgs in changelog(s).values():
        last_commit = max((n for n, m in enumerate(msgs) if m.key().startswith(COMMIT)), default=-1)
        partial += len(msgs) - 1 - last_commit
    assert partial > 0, "killed outside the changelog writes: nothing tested"

    b = spawn(s, dir_b, log=tmp_path / "b.log")             # failover: a new host, empty disk
    wait_until(lambda: "restored partition" in (tmp_path / "b.log").read_text(), timeout=60, what="b restored")
    a = spawn(s, dir_a, log=tmp_path / "a2.log")            # the old host comes back with its disk
    wait_until(lambda: "assigned partitions" in (tmp_path / "a2.log").read_text(), timeout=60, what="a rejoined")
    time.sleep(3)
    assert stop(b) == 0                                      # a takes everything over again
    wait_caught_up([dir_a], s.interactions_topic, ends, procs=[a])
    assert stop(a) == 0
    dump = dump_state(dir_a, s.interactions_topic)
    assert applied(dump) == N_EVENTS, "events lost or applied twice"
    assert dump == reference[1]
    assert latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.5, timeout=60)) == reference[0]


def test_a_recreated_input_topic_is_read_from_its_start_keeping_the_state(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    run_to_the_end(s, [event(f"u{n % 100}", f"i{n % 40}", ts=1_700_000_000_000 + n) for n in range(1000)])
    recreate(s, s.interactions_topic)
    # More records than the stored positions: offsets alone cannot tell the topic is new.
    second = [event(f"n{n % 300}", f"i{n % 40}", ts=1_700_000_100_000 + n) for n in range(3000)]
    ends = produce(s, records(second))
    log = tmp_path / "worker.log"
    proc = spawn(s, log=log)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    dump = dump_state(s.state_dir, s.interactions_topic)
    assert applied(dump) == 4000, "every event of both topics applied exactly once"
    assert {f"n{n}" for n in range(300)} <= set(users(dump))
    assert "was recreated (its id changed)" in log.read_text()


def test_a_recreated_changelog_is_reseeded_and_a_later_restore_is_whole(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    run_to_the_end(s, [event(f"u{n % 100}", "i1", ts=1_700_000_000_000 + n) for n in range(500)])
    recreate(s, s.changelog_topic)
    log = tmp_path / "worker.log"
    ends = run_to_the_end(s, [event(f"v{n % 50}", "i2", ts=1_700_000_100_000 + n) for n in range(200)], log=log)
    assert "re-seeding it from the local store" in log.read_text()
    before = dump_state(s.state_dir, s.interactions_topic)
    shutil.rmtree(s.state_dir)                                # then the disk is lost
    proc = spawn(s)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    after = dump_state(s.state_dir, s.interactions_topic)
    assert len(users(after)) == 150 and applied(after) == 700
    assert after == before


def test_a_changelog_that_lost_its_start_is_refused_with_one_clear_line(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    run_to_the_end(s, [event(f"u{n % 100}", "i1", ts=1_700_000_000_000 + n) for n in range(500)])
    # A copy of the changelog without its first records: what retention or a partial copy leaves.
    truncated = make_settings(broker, tmp_path, group_id=s.group_id + "-t", interactions_topic=s.interactions_topic,
                              changelog_topic=s.changelog_topic + "-t", state_dir=tmp_path / "empty")
    ensure_topics(truncated)
    copy = [(m.partition(), m) for msgs in changelog(s).values() for m in msgs[3:]]
    p = Producer({"bootstrap.servers": s.bootstrap_servers})
    for partition, m in copy:
        p.produce(truncated.changelog_topic, key=m.key(), value=m.value(), partition=partition,
                  headers=m.headers() or [])
    assert p.flush(30) == 0
    log = tmp_path / "refused.log"
    proc = spawn(truncated, log=log)
    assert proc.wait(60) == 1, "the worker must stop rather than restore less than the state"
    text = log.read_text()
    assert "does not hold the partition's whole state" in text and "Traceback" not in text


def test_a_restore_reads_from_the_newest_snapshot_not_the_whole_history(broker, tmp_path):
    s = make_settings(broker, tmp_path, partitions=1)
    ensure_topics(s)
    proc = spawn(s, log=tmp_path / "first.log", env={"RECO_SNAPSHOT_MIN_RECORDS": "300"})
    # Few users and items, many checkpoints: the changelog's history outgrows the state.
    for wave in range(12):
        ends = produce(s, records([event(f"u{n % 40}", f"i{(n + wave) % 60}", ts=1_700_000_000_000 + wave * 10**6 + n)
                                   for n in range(500)]))
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    assert "changelog snapshot of" in (tmp_path / "first.log").read_text()
    before = dump_state(s.state_dir, s.interactions_topic, include_models=True)
    log_records = changelog(s)[0]
    history = len(log_records)
    assert history < 12 * 500 / 2, "model rows are packed: a few records per checkpoint, not one per row"
    # Each snapshot deletes the packed records from before the snapshot before it, and only those.
    snapshots = [n for n, m in enumerate(log_records) if m.key().startswith(SNAPSHOT)]
    assert len(snapshots) >= 3
    packed_at = {m.key(): n for n, m in enumerate(log_records) if m.key().startswith(ROWS) and m.value() is not None}
    deleted = [m.key() for m in log_records[snapshots[-1]:] if m.key().startswith(ROWS) and m.value() is None]
    written = [k for k in deleted if k in packed_at]
    assert written and all(snapshots[-3] < packed_at[k] < snapshots[-2] for k in written)
    assert set(written) == {k for k, n in packed_at.items() if snapshots[-3] < n < snapshots[-2]}
    shutil.rmtree(s.state_dir)
    log = tmp_path / "restore.log"
    proc = spawn(s, log=log)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    line = next(x for x in log.read_text().splitlines() if "restored partition 0 from the changelog" in x)
    restored = int(line.split(": ")[-1].split(" records")[0])
    assert restored < history / 2, f"read {restored} of {history} changelog records"
    assert dump_state(s.state_dir, s.interactions_topic, include_models=True) == before
