"""The one place that decides what is committed together.

Order, per checkpoint:
  1. take every shard's changed rows (user state, model rows) since the last checkpoint;
  2. produce them to the partition's changelog, next to the recommendations and DLQ records
     already produced since the last checkpoint;
  3. flush the producer and check every delivery — nothing below happens unless all landed;
  4. write the rows and the next input offset to the shard's RocksDB in ONE WriteBatch;
  5. commit the same offsets to the consumer group (informational: the store is authoritative).

A crash anywhere before 4 replays the interval from the old position; with deterministic
models the replay re-publishes byte-identical lists, so the compacted outputs end up equal.
"""
from __future__ import annotations

import logging
from typing import Callable

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from online_models.engine import Engine
from online_models.store import POSITION as POSITION_KEY

from .metrics import Metrics

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    pass


class Checkpointer:
    def __init__(self, producer: Producer, changelog_topic: str, input_topic: str, metrics: Metrics,
                 delivery_timeout_s: float = 30.0):
        self.producer = producer
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
                partition: int | None = None, headers: list | None = None) -> None:
        kwargs = {"key": key, "value": value, "on_delivery": self.on_delivery}
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

    def checkpoint(self, shards: dict[int, Engine], positions: dict[int, int],
                   commit_offsets: Callable[[list[TopicPartition]], None] | None = None) -> None:
        """Make everything since the last checkpoint durable for the given partitions."""
        staged = {}
        for partition, engine in shards.items():
            rows = engine.pending_rows()
            position = positions.get(partition)
            if not rows and position is None:
                continue
            for key, value in rows.items():
                self.produce(self.changelog_topic, key, value, partition=partition)
            if position is not None:
                self.produce(self.changelog_topic, POSITION_KEY, str(position).encode(), partition=partition)
            staged[partition] = (engine, rows, position)
        self.flush()
        for partition, (engine, rows, position) in staged.items():
            engine.store.write(rows, position)
        if commit_offsets:
            offsets = [TopicPartition(self.input_topic, p, pos) for p, (_, _, pos) in staged.items()
                       if pos is not None]
            if offsets:
                commit_offsets(offsets)

