"""The one place that decides what is committed together.

Order, per checkpoint and partition (the changelog's record protocol: streams/worker/changelog.py):
  1. take every shard's changed rows (user state, model rows) since the last checkpoint;
  2. produce them to the partition's changelog tagged with the owner's epoch and the interval's
     seq — rows that name a user each on its key, model rows packed into a few records — then
     the interval's commit marker (seq, next input offset), next to the recommendations and DLQ
     records already produced since the last checkpoint;
  3. flush the producer and check every delivery — nothing below happens unless all landed;
  4. write the rows, the next input offset and the owner's seq to the shard's RocksDB in ONE
     WriteBatch;
  5. commit the same offsets to the consumer group (informational: the store is authoritative),
     and the newest snapshot's changelog offset (where a restore on an empty disk starts).

A crash anywhere before 4 replays the interval from the old position; with deterministic
models the replay re-publishes byte-identical lists, so the compacted outputs end up equal. A
restore never applies an interval whose commit marker did not land, nor a fenced owner's.
When the changelog since the last snapshot outgrows the state, the owner writes a snapshot (every
row again, as one interval), so a restore reads a bounded multiple of the state, not the history;
it deletes the packed records from before the snapshot before it, which no restore reads again.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Callable, Iterator

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from online_models.engine import Engine
from online_models.state.store import KEYS, MODEL, OPT_OUT, RETENTION, RETENTION_INDEX, USER
from streams.metrics import Metrics
from streams.worker.changelog import Ranges, commit_record, pack_rows, row_headers, rows_key, snapshot_record

log = logging.getLogger(__name__)


PERSONAL = (USER, OPT_OUT, RETENTION_INDEX)  # row prefixes that name a user
SNAPSHOT_FACTOR = 2  # snapshot once the log since the last one is this many times the state (and big enough)


class DeliveryFailed(RuntimeError):
    pass


class Checkpointer:
    def __init__(self, producer: Producer, changelog_topic: str, input_topic: str, metrics: Metrics,
                 delivery_timeout_s: float = 30.0, fault_kill_at: int = 0, snapshot_min_records: int = 20_000,
                 snapshot_max_age_s: float = 6 * 3600):
        self.producer = producer
        self.corrections: dict[int, dict[bytes, bytes | None]] = {}  # rewritten in a partition's next interval
        self.snapshot_min_records = snapshot_min_records
        self.snapshot_max_age_s = snapshot_max_age_s
        self._fault_kill_at = fault_kill_at  # tests: SIGKILL inside the n-th checkpoint's changelog writes
        self._checkpoints = 0
        self.delivery_timeout_s = delivery_timeout_s
        self.changelog_topic = changelog_topic
        self.input_topic = input_topic
        self.metrics = metrics
        self._errors: list[str] = []

    # Every produce in the worker goes through here so its delivery is checked.
    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def produce(self, topic: str, key: bytes | str | None, value: bytes | None,
                partition: int | None = None, headers: list | None = None, offsets: list | None = None) -> None:
        """Produce with a checked delivery; `offsets` collects the record's offset once delivered."""
        on_delivery = self.on_delivery
        if offsets is not None:
            def on_delivery(err, msg):
                self.on_delivery(err, msg)
                if err is None:
                    offsets.append(msg.offset())
        kwargs = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:  # the bounded queue is full: wait for deliveries (backpressure)
                self.producer.poll(0.1)

    def flush(self) -> None:
        remaining = self.producer.flush(self.delivery_timeout_s)
        if remaining:
            raise DeliveryFailed(f"{remaining} records still undelivered after {self.delivery_timeout_s:g} s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryFailed(f"{len(errors)} deliveries failed, first: {errors[0]}")

    def replace_producer(self, producer: Producer) -> None:
        """Drop everything undelivered (the caller replays it) and continue with a new producer:
        an idempotent producer can be wedged for good, e.g. by a broker that lost its state."""
        try:
            self.producer.purge()
            self.producer.flush(0)
        except Exception as e:  # the old producer is being discarded either way
            log.debug("purging the old producer: %s", e)
        self.producer = producer
        self._errors = []

    def write_marker(self, partition: int, key: bytes, value: bytes) -> int:
        """A fence or claim record on the partition's changelog, delivered; returns its offset."""
        offsets: list[int] = []
        self.produce(self.changelog_topic, key, value, partition=partition, offsets=offsets)
        self.flush()
        return offsets[0]

    def checkpoint(self, shards: dict[int, Engine], positions: dict[int, int],
                   commit_offsets: Callable[[list[TopicPartition]], None] | None = None) -> None:
        """Make everything since the last checkpoint durable for the given partitions."""
        staged = {}
        for partition, engine in shards.items():
            rows = {**self.corrections.pop(partition, {}), **engine.pending_rows()}
            position = positions.get(partition)
            if not rows and position is None:
                continue
            meta = dict(engine.store.meta)
            seq = meta["seq"] + 1
            headers = row_headers(meta["epoch"], seq)
            keyed, models = [], []
            for row in rows.items():  # rows that name a user stay on their keys, model rows are packed
                (models if row[0].startswith(MODEL) else keyed).append(row)
            packed = list(self._packed(meta["epoch"], seq, models))
            records = keyed + packed
            for n, (key, value) in enumerate(records):
                self.produce(self.changelog_topic, key, value, partition=partition, headers=headers)
                if n == len(records) // 2:
                    self._maybe_fault()
            key, value = commit_record(meta["epoch"], seq, position if position is not None else engine.store.position)
            committed_at: list[int] = []
            self.produce(self.changelog_topic, key, value, partition=partition, headers=headers, offsets=committed_at)
            meta["packed"] = [list(r) for r in meta.get("packed", [])]
            Ranges.add(meta["packed"], meta["epoch"], seq, len(packed))
            meta.update(seq=seq, log_records=meta.get("log_records", 0) + len(rows) + 1)
            staged[partition] = (engine, rows, position, meta, committed_at)
        self.flush()
        for partition, (engine, rows, position, meta, committed_at) in staged.items():
            meta["next"] = committed_at[0] + 1  # a disk-kept store catches up from here (decision 0014)
            engine.store.write(rows, position, meta)
            self._erase_people(engine, rows)
        snapshots = [TopicPartition(self.changelog_topic, p, self.snapshot(p, engine))
                     for p, (engine, _, _, meta, _) in staged.items() if self._snapshot_due(meta)]
        if commit_offsets:
            offsets = [TopicPartition(self.input_topic, p, pos) for p, (_, _, pos, _, _) in staged.items()
                       if pos is not None]
            if offsets or snapshots:
                commit_offsets(offsets + snapshots)

    @staticmethod
    def _packed(epoch: str, seq: int, model_rows) -> Iterator[tuple[bytes, bytes]]:
        """Interval `seq`'s model rows as its packed changelog records (key, value). The other
        rows each keep a record on their own key: compaction keeps a user's latest only, and
        forget's tombstone reaches every copy."""
        for part, packed in enumerate(pack_rows(model_rows)):
            yield rows_key(epoch, seq, part), packed

    @staticmethod
    def _erase_people(engine: Engine, rows: dict[bytes, bytes | None]) -> None:
        """A user deleted (forget, opt-out, retention) or an opt-out withdrawn: compact their rows,
        and the index rows that named them, out of the store's files too (model rows hold no ids)."""
        deleted = [k for k, v in rows.items() if v is None and k.startswith(PERSONAL)]
        if any(k.startswith((USER, OPT_OUT)) for k in deleted):
            engine.store.erase(deleted)

    def _snapshot_due(self, meta: dict) -> bool:
        log_records = meta.get("log_records", 0)
        if log_records and time.time() - meta.setdefault("snapshot_at", time.time()) > self.snapshot_max_age_s:
            return True  # bounds how long a fenced owner's last write can shadow a key (decision 0014)
        return log_records > self.snapshot_min_records and log_records > SNAPSHOT_FACTOR * meta.get("snapshot_rows", 0)

    def snapshot(self, partition: int, engine: Engine) -> int:
        """Every row of the store again, as one interval that a restore may start from; returns
        the snapshot's offset (call right after a checkpoint: the store is the whole state)."""
        store = engine.store
        meta = dict(store.meta)
        seq = meta["seq"] + 1
        headers = row_headers(meta["epoch"], seq)
        offsets: list[int] = []
        before = meta.get("packed", [])  # packed since the last snapshot: unneeded after the next one
        key, value = snapshot_record(meta["epoch"], seq, before)
        self.produce(self.changelog_topic, key, value, partition=partition, headers=headers, offsets=offsets)
        rows = 0
        for key, value in store.rows((USER, RETENTION, KEYS, OPT_OUT)):
            self.produce(self.changelog_topic, key, value, partition=partition, headers=headers)
            rows += 1
        models = [0]

        def model_rows():
            for row in store.scan(MODEL):
                models[0] += 1
                yield row
        parts = 0
        for parts, (key, value) in enumerate(self._packed(meta["epoch"], seq, model_rows()), 1):
            self.produce(self.changelog_topic, key, value, partition=partition, headers=headers)
        key, value = commit_record(meta["epoch"], seq, store.position)
        self.produce(self.changelog_topic, key, value, partition=partition, headers=headers, offsets=offsets)
        # The snapshot before this one is now the oldest a restore may need (it starts at this one,
        # or at that one if this one proves a fenced owner's): what was packed before it goes.
        for key in Ranges.keys(meta.get("garbage", [])):
            self.produce(self.changelog_topic, key, None, partition=partition)
        self.flush()
        rows += models[0]
        packed: list = []
        Ranges.add(packed, meta["epoch"], seq, parts)
        meta.update(seq=seq, log_records=rows + 2, snapshot_rows=rows, since=offsets[0], next=offsets[1] + 1,
                    snapshot_at=time.time(), packed=packed, garbage=before)
        store.write({}, None, meta)
        self.metrics.snapshots.inc()
        log.info("partition %d: changelog snapshot of %d rows at offset %d", partition, rows, offsets[0])
        return offsets[0]

    def _maybe_fault(self) -> None:
        if self._fault_kill_at:
            self._checkpoints += 1
            if self._checkpoints == self._fault_kill_at:
                self.producer.flush(10)  # the interval's first rows land, its commit marker never does
                os.kill(os.getpid(), signal.SIGKILL)
