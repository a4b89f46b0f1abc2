"""Keeps the worker's Catalog in step with the compacted `items` topic (every partition,
from the beginning; no consumer group: each worker needs the whole catalogue).

The join is aligned on record timestamps, as Kafka Streams aligns a stream with a table
(docs/decisions/0013-catalogue-join-order.md): records are read into a buffer as they come, and
an event with record timestamp T sees exactly the catalogue records stamped ≤ T — after the feed
made sure, waiting at most `catalog_wait_ms`, that every items partition has been read to its
end or past a record stamped > T. So which items an event meets does not depend on which topic
the worker happened to read first."""
from __future__ import annotations

import heapq
import logging
import time
from typing import Callable

import fastjsonschema
import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from online_models.catalog import Catalog
from streams.clients import CLIENT_LOG, admin, consumer
from streams.schemas import validator
from streams.settings import Settings

log = logging.getLogger(__name__)


class CatalogFeed:
    def __init__(self, settings: Settings, catalog: Catalog, on_invalid: Callable[[Message, str, str], None]):
        self.settings = settings
        self.catalog = catalog
        self.on_invalid = on_invalid
        self.wait_s = settings.catalog_wait_ms / 1000
        self._validate = validator("item")
        self._consumer = consumer(settings, group_id=f"{settings.group_id}-catalog",
                                  **{"enable.partition.eof": True})
        self._admin = admin(settings)
        meta = self._consumer.list_topics(settings.items_topic, timeout=10).topics[settings.items_topic]
        self._partitions = sorted(meta.partitions)
        self._consumer.assign([TopicPartition(settings.items_topic, p, OFFSET_BEGINNING)
                               for p in self._partitions])
        self._at_end: set[int] = set()
        self._next: dict[int, int] = {p: 0 for p in self._partitions}    # first offset not yet read
        self._last_ts: dict[int, int] = {}                               # timestamp of the last record read
        # Read, valid, not yet applied: (record ts, partition, offset, item id, record or None = removal)
        self._pending: list[tuple[int, int, int, str, dict | None]] = []
        self._slow_warned = False

    # -- reading ----------------------------------------------------------------------------
    def fetch(self, max_records: int = 1000, timeout: float = 0.0) -> int:
        """Read whatever catalogue records are waiting into the buffer; returns how many."""
        read = 0
        for msg in self._consumer.consume(max_records, timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(msg.partition())
                    self._next[msg.partition()] = max(self._next[msg.partition()], msg.offset())
                else:
                    CLIENT_LOG.warning("items topic: %s", err.str())
                continue
            p = msg.partition()
            self._at_end.discard(p)
            self._next[p] = msg.offset() + 1
            _, ts = msg.timestamp()
            self._last_ts[p] = ts
            change = self._decode(msg)
            if change is not None:
                heapq.heappush(self._pending, (ts, p, msg.offset(), *change))
                read += 1
        return read

    def catch_up(self, timeout_s: float = 30.0) -> int:
        """Read the catalogue to its end before the first event (applied as events reach it)."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while len(self._at_end) < len(self._partitions) and time.monotonic() < deadline:
            total += self.fetch(5000, 0.2)
        return total

    def read_past(self, ts: int) -> None:
        """Read until every partition is at its end or past a record stamped > ts, within the wait."""
        behind = [p for p in self._partitions if self._last_ts.get(p, -1) <= ts]
        if not behind:
            return
        deadline = time.monotonic() + self.wait_s
        ends = self._end_offsets(behind)  # asked now: covers every record appended before this event was read
        while True:
            behind = [p for p in behind if self._last_ts.get(p, -1) <= ts and self._next[p] < ends.get(p, 0)]
            if not behind:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                if not self._slow_warned:  # once: during an outage every batch would say it
                    log.warning("items topic: not read up to the events within %d ms (RECO_CATALOG_WAIT_MS); "
                                "going on with the catalogue read so far", self.settings.catalog_wait_ms)
                    self._slow_warned = True
                return
            self.fetch(5000, min(left, 0.05))

    def _end_offsets(self, partitions: list[int]) -> dict[int, int]:
        topic = self.settings.items_topic
        try:
            futures = self._admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                                               request_timeout=max(self.wait_s, 0.1))
            return {tp.partition: f.result().offset for tp, f in futures.items()}
        except KafkaException as e:  # broker unreachable: what was read so far is all there is
            log.debug("items topic end offsets: %s", e)
            return {}

    # -- applying ---------------------------------------------------------------------------
    def apply_up_to(self, ts: int | None) -> int:
        """Make the catalogue what an event stamped `ts` must see: every buffered record stamped
        ≤ ts, in (timestamp, partition, offset) order (None, no usable record timestamp: all read
        so far). Call read_past first. Returns how many changes were applied."""
        return self._apply_up_to(ts)

    def _apply_up_to(self, ts: int | None) -> int:
        applied = 0
        pending = self._pending
        while pending and (ts is None or pending[0][0] <= ts):
            _, _, _, item_id, record = heapq.heappop(pending)
            if record is None:
                self.catalog.remove(item_id)
            else:
                self.catalog.upsert(record)
            applied += 1
        return applied

    def _decode(self, msg: Message) -> tuple[str, dict | None] | None:
        """(item id, record or None for a removal), or None after dead-lettering an invalid record."""
        key = msg.key()
        value = msg.value()
        try:
            item_id = key.decode("utf-8") if key is not None else None
            if value is None:
                if item_id:
                    return item_id, None
                self.on_invalid(msg, "null_key", "tombstone without a key")
                return None
            record = orjson.loads(value)
            self._validate(record)
        except (UnicodeDecodeError, orjson.JSONDecodeError) as e:
            self.on_invalid(msg, "invalid_json", f"item: {e}")
            return None
        except fastjsonschema.JsonSchemaValueException as e:
            self.on_invalid(msg, "schema", f"item schema: {e.message}")
            return None
        except Exception as e:  # whatever the bytes, the worker keeps going
            self.on_invalid(msg, "schema", f"item: {type(e).__name__}: {e}")
            return None
        if item_id is not None and item_id != record["item_id"]:
            self.on_invalid(msg, "key_mismatch", "item key does not match item_id")
            return None
        return record["item_id"], record

    def close(self) -> None:
        self._consumer.close()
