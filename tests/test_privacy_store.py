"""A forgotten user is gone from the worker's files, not only from its reads, and a store left on a
host after its partition moved away does not stay there — real broker, real RocksDB, real processes."""
from __future__ import annotations

import time
from pathlib import Path

import orjson
from helpers import event, produce, wait_until
from test_recovery_changelog import make_settings, records
from workers import positions, spawn, stop, wait_caught_up

from online_models.state.store import partition_stores
from streams import clients
from streams.clients import ensure_topics
from streams.serve.app import forget_request
from streams.worker.decode import CONTROL_HEADER, FORGET_USER

USER = "alice-0c1d9e-unique"


def files_holding(state_dir: Path, topic: str, needle: bytes) -> list[str]:
    return [f.name for path in partition_stores(state_dir, topic).values() for f in path.iterdir()
            if f.is_file() and needle in f.read_bytes()]


def produce_as_the_engine(s, recs) -> dict[int, int]:
    """Keyed like `reco produce` and `reco serve` key them (murmur2), so markers land with the events."""
    p, ends = clients.producer(s), {}
    for key, value in recs:
        p.produce(s.interactions_topic, key=key, value=orjson.dumps(value),
                  on_delivery=lambda err, m: ends.__setitem__(m.partition(), max(ends.get(m.partition(), 0), m.offset() + 1)))
    assert p.flush(30) == 0
    return ends


def test_a_forgotten_user_is_erased_from_the_store_files(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    evs = [event(USER, f"i{n % 7}", ts=1_700_000_000_000 + n) for n in range(50)]
    evs += [event(f"other{n % 30}", f"i{n % 7}", ts=1_700_000_000_000 + n) for n in range(300)]
    ends = produce_as_the_engine(s, records(evs))  # the forget marker below must meet the user's events
    proc = spawn(s)
    wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    assert files_holding(s.state_dir, s.interactions_topic, USER.encode()), "nothing to erase: test is void"

    p = clients.producer(s)
    p.produce(s.interactions_topic, key=USER, value=forget_request(USER), headers=[(CONTROL_HEADER, FORGET_USER)])
    assert p.flush(10) == 0
    partition = clients.partition_for(USER, s.partitions)
    proc = spawn(s)
    wait_until(lambda: (positions(s.state_dir, s.interactions_topic).get(partition) or 0) > ends[partition],
               timeout=60, what="the forget marker checkpointed")
    time.sleep(1)
    assert stop(proc) == 0
    assert files_holding(s.state_dir, s.interactions_topic, USER.encode()) == []


def test_a_store_left_behind_by_a_moved_partition_is_removed(broker, tmp_path):
    s = make_settings(broker, tmp_path, partitions=4)
    ensure_topics(s)
    ends = produce(s, records([event(f"u{n % 40}", "i1", ts=1_700_000_000_000 + n) for n in range(400)]))
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    env = {"RECO_STALE_STORE_DELAY_S": "1"}
    a = spawn(s, dir_a, log=tmp_path / "a.log", env=env)
    wait_caught_up([dir_a], s.interactions_topic, ends, procs=[a])
    assert len(partition_stores(dir_a, s.interactions_topic)) == 4
    b = spawn(s, dir_b, log=tmp_path / "b.log", env=env)
    wait_until(lambda: partition_stores(dir_b, s.interactions_topic), timeout=60, what="b took partitions")
    wait_until(lambda: set(partition_stores(dir_a, s.interactions_topic))
               .isdisjoint(partition_stores(dir_b, s.interactions_topic)), timeout=60,
               what="a removed the stores it no longer owns")
    assert "removed the store of partition" in (tmp_path / "a.log").read_text()
    assert stop(b) == 0 and stop(a) == 0
