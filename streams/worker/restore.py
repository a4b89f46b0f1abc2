"""Bring a partition's store up to its changelog's committed state (decision 0014), as Kafka
Streams restores a state store: from the newest snapshot on an empty disk, or just the records
since its own fence when the disk kept the store. A restore runs in steps of a bounded number of
records between the worker's polls, so the group never waits on it and other partitions flow."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicCollection, TopicPartition

from online_models.state.store import POSITION, RESTORING, PartitionStore
from streams.clients import TopologyError, consumer
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker.changelog import ChainReader, Diverged, NotAChainStart

log = logging.getLogger(__name__)
BATCH_ROWS = 5000


class RestoreRefused(TopologyError):
    """The changelog cannot hold the partition's whole state: restoring would silently lose it."""


@dataclass
class Restored:
    position: int | None
    prev: str | None          # the owner whose state this is, for the claim
    committed: int | None
    input_id: str | None
    corrections: dict         # rows whose newest changelog record was not applied: rewrite them
    records: int
    rows: int                 # rows they held (packed records hold many)
    packed: list              # packed-rows ranges read since the last snapshot (changelog.Ranges)
    garbage: list             # ... and before it: the next snapshot deletes them
    boundaries: int           # snapshots read


class RestoreJob:
    """One partition's restore up to (not including) the new owner's fence at `end`.

    `local`: (epoch, seq, next) of a store the disk kept — only the records from `next` (after
    the last commit marker the store holds) are read and applied on top; a store that turns out to hold intervals the chain dropped is restored
    from scratch instead. Without `local` the store is wiped and rebuilt from `since` (the newest
    snapshot, 0 if none or if it proves unusable)."""

    def __init__(self, settings: Settings, store: PartitionStore, partition: int, metrics: Metrics,
                 end: int, since: int = 0, local: tuple[str, int, int] | None = None,
                 stall_timeout_s: float = 60.0):
        self.settings, self.store, self.partition, self.metrics = settings, store, partition, metrics
        self.end, self.stall_timeout_s = end, stall_timeout_s
        self._client = consumer(settings, group_id=f"{settings.group_id}-restore")
        self._gauge = metrics.restore_remaining.labels(str(partition))
        self._start(local, since)

    def _start(self, local: tuple[str, int, int] | None, since: int) -> None:
        self._rows: dict[bytes, bytes | None] = {}
        if local is not None:
            epoch, seq, start = local
            self.store.write({RESTORING: b"1"}, None)  # a crash mid-way: the next start wipes it
            self.reader = ChainReader(self._apply, self._reset, local=epoch, skip=seq)
        else:
            self.store.begin_restore()
            self.reader = ChainReader(self._apply, self._reset)
            start = since if since < self.end else 0
        self.local, self.since, self.next = local, start, start
        self._gauge.set(max(self.end - start, 0))
        self._last_progress = time.monotonic()
        self._client.assign([TopicPartition(self.settings.changelog_topic, self.partition, start)])

    def _apply(self, rows: dict[bytes, bytes | None]) -> None:
        self._rows.update(rows)
        if len(self._rows) >= BATCH_ROWS:
            self._flush()

    def _reset(self) -> None:
        self._rows = {}
        self.store.begin_restore()

    def _flush(self) -> None:
        if self._rows:
            self.store.write(self._rows, None)
            self._rows = {}

    def _from_scratch(self, why: str) -> None:
        log.warning("partition %d: %s; restoring it from the start of the changelog", self.partition, why)
        self._start(None, 0)

    def step(self, max_records: int = 5000) -> Restored | None:
        """Read and apply about `max_records` rows; the result once the fence is reached, else None."""
        if self.next >= self.end:
            return self._finish()
        # A packed record holds many rows: read as many records as keep a step near max_records rows.
        reader = self.reader
        per_record = max(reader.rows, 1) / max(reader.records, 1)
        msgs = self._client.consume(max(1, min(max_records, 1000, int(max_records / per_record))), 0.2)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"changelog restore of partition {self.partition} failed: {err.str()}")
            if msg.offset() >= self.end:
                self.next = self.end
                break
            self.next = msg.offset() + 1
            try:
                self.reader.feed(msg.key(), msg.value(), msg.headers())
            except Diverged as e:
                self._from_scratch(f"the local store is not the changelog's state ({e})")
                return None
            except NotAChainStart as e:
                if self.since > 0:
                    self._from_scratch(f"the snapshot at offset {self.since} is not usable ({e})")
                    return None
                raise self._refused(e) from None
            if self.reader.suspect:
                self._from_scratch(f"the snapshot at offset {self.since} was written by a fenced owner")
                return None
        now = time.monotonic()
        if msgs:
            self._last_progress = now
            self._gauge.set(max(self.end - self.next, 0))
        elif now - self._last_progress > self.stall_timeout_s:
            raise TimeoutError(f"changelog restore of partition {self.partition}: no record for "
                               f"{self.stall_timeout_s:g} s at offset {self.next} of {self.end}")
        return self._finish() if self.next >= self.end else None

    def _refused(self, why: Exception) -> RestoreRefused:
        return RestoreRefused(
            f"changelog {self.settings.changelog_topic} partition {self.partition} does not hold the "
            f"partition's whole state ({why}): it was recreated or truncated. Restoring from it would "
            "silently lose state, so the worker stops. Start a worker on the state directory that still "
            "has this partition's store (it re-seeds the changelog), or delete and recreate the changelog "
            "topic empty to rebuild the state from the interactions topic")

    def _finish(self) -> Restored:
        reader = self.reader
        try:
            reader.finish()
        except NotAChainStart as e:
            raise self._refused(e) from None
        self._flush()
        position = reader.position if reader.position is not None else (self.store.position if self.local else None)
        corrections = {key: self.store.get(key) for key in sorted(reader.dirty)}
        prev, committed = reader.last_owner()
        rows = {RESTORING: None} if position is None else {RESTORING: None, POSITION: str(position).encode()}
        self.store.write(rows, None)
        self.store.reload_position()
        self._gauge.set(0)
        self.metrics.restored.inc(reader.records)
        if reader.records:
            log.info("%s partition %d from the changelog: %d records, position %s",
                     "caught up" if self.local else "restored", self.partition, reader.records, self.store.position)
        return Restored(self.store.position, prev, committed, reader.input_id, corrections, reader.records,
                        reader.rows, reader.packed_ranges(), reader.garbage, reader.boundaries)

    def close(self) -> None:
        self._client.close()


def packed_records(meta: dict, restored: Restored | None) -> dict:
    """Which packed-rows records the changelog holds, since the last snapshot and before it
    (the next snapshot deletes those): the local store's (`meta`) and what the restore read."""
    packed, garbage = meta.get("packed", []), meta.get("garbage", [])
    if restored is not None:
        if restored.boundaries:
            packed, garbage = [], garbage + packed + restored.garbage
        packed = packed + restored.packed
    return {"packed": packed, "garbage": garbage}


def topic_ids(admin, names: list[str], timeout: float = 10.0) -> dict[str, str | None]:
    """Each topic's id (a topic deleted and created again gets a new one); None where the broker
    does not say."""
    out: dict[str, str | None] = dict.fromkeys(names)
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout)
        for name, future in futures.items():
            topic_id = future.result().topic_id
            out[name] = str(topic_id) if topic_id is not None else None
    except Exception as e:  # an old broker: no ids, no check
        log.debug("topic ids unavailable: %s", e)
    return out
