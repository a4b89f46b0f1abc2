"""Keeps the worker's Catalog in step with the compacted `items` topic (every partition,
from the beginning; no consumer group: each worker needs the whole catalogue)."""
from __future__ import annotations

import logging
import time
from typing import Callable

import fastjsonschema
import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from online_models.catalog import Catalog

from .clients import consumer
from .schemas import validator
from .settings import Settings

log = logging.getLogger(__name__)


class CatalogFeed:
    def __init__(self, settings: Settings, catalog: Catalog, on_invalid: Callable[[Message, str, str], None]):
        self.settings = settings
        self.catalog = catalog
        self.on_invalid = on_invalid
        self._validate = validator("item")
        self._consumer = consumer(settings, group_id=f"{settings.group_id}-catalog",
                                  **{"enable.partition.eof": True})
        meta = self._consumer.list_topics(settings.items_topic, timeout=10).topics[settings.items_topic]
        self._partitions = sorted(meta.partitions)
        self._consumer.assign([TopicPartition(settings.items_topic, p, OFFSET_BEGINNING)
                               for p in self._partitions])
        self._at_end: set[int] = set()

    def poll(self, max_records: int = 1000, timeout: float = 0.0) -> int:
        """Apply whatever catalogue changes are waiting; returns how many were applied."""
        applied = 0
        for msg in self._consumer.consume(max_records, timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(msg.partition())
                else:
                    log.warning("items topic: %s", err.str())
                continue
            self._at_end.discard(msg.partition())
            applied += self._apply(msg)
        return applied

    def catch_up(self, timeout_s: float = 30.0) -> int:
        """Read the catalogue to its end before serving, so first lists respect it."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while len(self._at_end) < len(self._partitions) and time.monotonic() < deadline:
            total += self.poll(5000, 0.2)
        return total

    def _apply(self, msg: Message) -> int:
        key = msg.key()
        value = msg.value()
        try:
            item_id = key.decode("utf-8") if key is not None else None
            if value is None:
                if item_id:
                    self.catalog.remove(item_id)
                    return 1
                self.on_invalid(msg, "null_key", "tombstone without a key")
                return 0
            record = orjson.loads(value)
            self._validate(record)
        except (UnicodeDecodeError, orjson.JSONDecodeError) as e:
            self.on_invalid(msg, "invalid_json", f"item: {e}")
            return 0
        except fastjsonschema.JsonSchemaValueException as e:
            self.on_invalid(msg, "schema", f"item schema: {e.message}")
            return 0
        except Exception as e:  # whatever the bytes, the worker keeps going
            self.on_invalid(msg, "schema", f"item: {type(e).__name__}: {e}")
            return 0
        if item_id is not None and item_id != record["item_id"]:
            self.on_invalid(msg, "key_mismatch", "item key does not match item_id")
            return 0
        self.catalog.upsert(record)
        return 1

    def close(self) -> None:
        self._consumer.close()
