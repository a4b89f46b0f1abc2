"""Topics that cannot work together fail fast with a fix in the message; a restore cut short
is redone, never trusted; users land in the partitions the evaluation says they do."""
from __future__ import annotations

import subprocess
import sys

from confluent_kafka.admin import NewTopic
from helpers import read_all
from workers import worker_env

from online_models.state.store import PartitionStore, user_key
from streams.clients import admin, ensure_topics, partition_for, producer


def test_partition_for_is_where_the_producer_puts_a_user(settings_factory):
    """`reco evaluate --partitions N` splits users with partition_for: it must agree with the
    producer the engine uses (and Java clients), record by record, on a real broker."""
    s = settings_factory(partitions=5)
    client = admin(s)
    for f in client.create_topics([NewTopic(s.interactions_topic, num_partitions=5,
                                            replication_factor=1)]).values():
        f.result()
    users = [f"user-{n}" for n in range(60)] + ["", "ü-ß-名前", "11493"]
    p = producer(s)
    for u in users:
        p.produce(s.interactions_topic, key=u.encode(), value=b"{}")
    assert p.flush(30) == 0
    landed = {m.key().decode(): m.partition() for m in read_all(s, s.interactions_topic, idle_s=0.3)}
    assert set(landed) == set(users)
    assert len(set(landed.values())) == 5  # spread over every partition, so the check means something
    assert {u: partition_for(u, 5) for u in users} == landed


def test_changelog_with_too_few_partitions_stops_the_worker_with_a_fix(settings_factory):
    s = settings_factory(partitions=2)
    client = admin(s)
    for f in client.create_topics([NewTopic(s.interactions_topic, num_partitions=3, replication_factor=1)]).values():
        f.result()
    ensure_topics(s)  # creates the missing changelog with the input's 3 partitions, not 2
    parts = client.list_topics(s.changelog_topic, timeout=10).topics[s.changelog_topic].partitions
    assert len(parts) == 3

    bad = s.model_copy(update={"changelog_topic": s.changelog_topic + "-small"})
    for f in client.create_topics([NewTopic(bad.changelog_topic, num_partitions=2, replication_factor=1,
                                            config={"cleanup.policy": "compact"})]).values():
        f.result()
    proc = subprocess.run([sys.executable, "-m", "streams.cli.main", "run"], env=worker_env(bad),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "has 2 partitions" in proc.stderr and "with 3 partitions" in proc.stderr, proc.stderr[-2000:]


def test_a_changelog_too_small_for_the_input_to_create_creates_nothing(settings_factory):
    import pytest

    from streams.clients import TopologyError

    s = settings_factory(partitions=3)
    client = admin(s)
    for f in client.create_topics([NewTopic(s.changelog_topic, num_partitions=2, replication_factor=1,
                                            config={"cleanup.policy": "compact"})]).values():
        f.result()
    with pytest.raises(TopologyError, match="set RECO_PARTITIONS=2"):
        ensure_topics(s)
    assert s.interactions_topic not in client.list_topics(timeout=10).topics


def test_a_restore_cut_short_is_redone_from_scratch(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    assert store.needs_restore()
    store.begin_restore()
    store.write({user_key("u1"): b"{}", b"\x00position": b"7"}, None)
    store.close()  # a crash or SIGTERM before end_restore

    store = PartitionStore(tmp_path / "p0")
    assert store.needs_restore(), "a half-restored store must not be trusted"
    store.begin_restore()
    assert store.get(user_key("u1")) is None and store.position is None  # leftovers wiped
    store.write({user_key("u2"): b"{}", b"\x00position": b"9"}, None)
    store.end_restore()
    assert not store.needs_restore() and store.position == 9
    store.close()
