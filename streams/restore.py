"""Rebuild a partition's store from its compacted changelog (when the partition moves to a
worker without a local copy), as Kafka Streams does."""
from __future__ import annotations

import logging
import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from online_models.store import PartitionStore

from .clients import consumer
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)
BATCH_ROWS = 5000


def restore_from_changelog(settings: Settings, store: PartitionStore, partition: int,
                           metrics: Metrics, tick: Callable[[], None] = lambda: None,
                           timeout_s: float = 600.0) -> int:
    """Copy the changelog partition into `store`; returns records restored. `tick` is called
    between fetches (liveness; it may raise to abandon the restore, which the next start redoes)."""
    client = consumer(settings, group_id=f"{settings.group_id}-restore", **{"enable.partition.eof": True})
    tp = TopicPartition(settings.changelog_topic, partition, OFFSET_BEGINNING)
    try:
        topic = client.list_topics(settings.changelog_topic, timeout=10).topics[settings.changelog_topic]
        if partition not in (topic.partitions or {}):
            raise RuntimeError(f"changelog topic {settings.changelog_topic} has no partition {partition}; "
                               f"it needs as many partitions as {settings.interactions_topic}")
        store.begin_restore()
        client.assign([tp])
        gauge = metrics.restore_remaining.labels(str(partition))
        restored, rows = 0, {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            tick()  # restoring is progress: keep liveness green
            msgs = client.consume(1000, 0.5)
            done = False
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done = True
                        continue
                    raise RuntimeError(f"changelog restore failed: {err.str()}")
                rows[msg.key()] = msg.value()
                restored += 1
            if len(rows) >= BATCH_ROWS or done:
                store.write(rows, None)
                rows = {}
            _, high = client.get_watermark_offsets(tp, cached=True)
            last = msgs[-1].offset() if msgs and not msgs[-1].error() else None
            if last is not None and high >= 0:
                gauge.set(max(high - last - 1, 0))
            if done:
                break
        else:
            raise TimeoutError(f"changelog restore of partition {partition} took over {timeout_s}s")
        gauge.set(0)
        metrics.restored.inc(restored)
        store.end_restore()
        if restored:
            log.info("restored partition %d from changelog: %d records, position %s",
                     partition, restored, store.position)
        return restored
    finally:
        client.close()
