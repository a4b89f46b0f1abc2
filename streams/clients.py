"""Thin constructors over confluent-kafka: explicit config dicts built from Settings."""
from __future__ import annotations

import logging
import re
import time
from typing import Any

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings

log = logging.getLogger(__name__)


class _FirstOfEachMessage(logging.Filter):
    """librdkafka repeats a failing connection's message many times a second (it retries that
    often): let each distinct message through once per `every_s`, with how often it repeated."""

    def __init__(self, every_s: float = 30.0):
        super().__init__()
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}  # message -> (when last shown, repeats since)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = re.sub(r"\d+", "#", text)  # "after 0ms", "3 identical error(s) suppressed": same message
        now = time.monotonic()
        shown, repeats = self._last.get(key, (None, 0))
        if shown is not None and now - shown < self.every_s:
            self._last[key] = (shown, repeats + 1)
            return False
        if len(self._last) > 1000:  # bounded: messages carry broker names, not unbounded ids
            self._last.clear()
        self._last[key] = (now, 0)
        if repeats:
            record.msg, record.args = "%s (and %d more like it since it was last shown)", (text, repeats)
        return True


KAFKA_LOG = logging.getLogger("librdkafka")  # every client's librdkafka messages, through logging
KAFKA_LOG.addFilter(_FirstOfEachMessage())
# What the worker itself reports about its clients (error callbacks, consume errors): in an outage
# the error callback fires on every reconnect attempt, as often as librdkafka logs.
CLIENT_LOG = logging.getLogger("streams.kafka")
CLIENT_LOG.addFilter(_FirstOfEachMessage())


def producer(settings: Settings, **overrides: Any) -> Producer:
    conf = {
        **settings.kafka_common(),
        "logger": KAFKA_LOG,
        "linger.ms": 5,
        "acks": "all",
        "enable.idempotence": True,
        # Keyed records land where Java clients, Kafka Streams and faust (routing table
        # lookups in `reco serve`) expect them.
        "partitioner": "murmur2_random",
        # Backpressure: produce() raises BufferError instead of queueing without bound.
        "queue.buffering.max.messages": 100_000,
        "queue.buffering.max.kbytes": 65_536,
        **overrides,
    }
    return Producer(conf)


def partition_for(key: str, partitions: int) -> int:
    """The partition the producer above (and Java clients, Kafka Streams, faust) puts a record
    keyed `key` in, out of `partitions`: Kafka's murmur2 of the key bytes (unless RECO_KAFKA_EXTRA
    sets another `partitioner`)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Consumer:
    conf = {
        **settings.kafka_common(),
        "logger": KAFKA_LOG,
        "group.id": group_id or settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Out-of-range positions surface as errors so the worker applies its documented policy.
        "auto.offset.reset": "error",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(settings.session_timeout_ms // 5, 500),
        # Bounded prefetch: memory stays flat however far behind the worker is.
        "queued.max.messages.kbytes": 16_384,
        "fetch.max.bytes": 8 * 1024 * 1024,
        "fetch.wait.max.ms": 50,
        **overrides,
    }
    return Consumer(conf)


def admin(settings: Settings) -> AdminClient:
    return AdminClient({**settings.kafka_common(), "logger": KAFKA_LOG})


def group_active(settings: Settings, group_id: str, timeout: float = 5.0) -> bool | None:
    """Whether consumer group `group_id` has members now: True (members listed, or the group is
    stable or rebalancing), False (empty or dead: nobody consumes), None when the broker does not
    say (an error, a timeout, a state it reports as unknown). The embedded broker lists no members
    but reports the state."""
    from confluent_kafka import ConsumerGroupState

    client = admin(settings)  # held until the answer is in: a collected client never resolves its futures
    try:
        futures = client.describe_consumer_groups([group_id], request_timeout=timeout)
        group = futures[group_id].result(timeout=timeout + 1)
    except Exception:  # not allowed to describe groups, an old broker…: no answer, not an error
        return None
    if group.members or group.state in (ConsumerGroupState.STABLE, ConsumerGroupState.PREPARING_REBALANCING,
                                        ConsumerGroupState.COMPLETING_REBALANCING):
        return True
    if group.state in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD):
        return False
    return None


def topic_specs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the engine uses and its configuration."""
    compact = {"cleanup.policy": "compact"}
    # Topics that hold user ids: on Apache Kafka an old record (a forgotten user's list or state)
    # is compacted away within max.compaction.lag.ms, segments roll every segment.ms so the active
    # one is not exempt for long. The changelog also keeps records uncompacted for two snapshot
    # periods: a key a fenced owner wrote last is rewritten by a snapshot before its committed
    # value could be compacted away (decision 0014).
    bounded = {**compact, "max.compaction.lag.ms": str(settings.compaction_max_lag_ms),
               "segment.ms": str(settings.segment_ms)}
    min_lag_ms = int(2 * settings.snapshot_max_age_s * 1000)
    changelog = {**bounded, "min.compaction.lag.ms": str(min_lag_ms),
                 "max.compaction.lag.ms": str(max(settings.compaction_max_lag_ms, min_lag_ms))}
    # Raw records naming users (events, forget/opt-out requests, rejected input) are deleted
    # after a known time, whatever the broker's default is.
    raw = {"retention.ms": str(settings.raw_retention_ms)}
    return {
        # The broker stamps the record time: a producer cannot date an event's record in 2099
        # to slip it past ts_in_future, and replays see the stored stamp (decision 0003).
        settings.interactions_topic: {**raw, "message.timestamp.type": "LogAppendTime"},
        settings.items_topic: compact,
        settings.recommendations_topic: bounded,
        settings.dlq_topic: raw,
        settings.control_topic: raw,
        settings.changelog_topic: changelog,
    }


def ensure_topics(settings: Settings, timeout: float = 15.0) -> list[str]:
    """Create the missing topics with the configured partitions (the changelog: as many as
    `interactions` has, if that exists already); returns the ones created."""
    client = admin(settings)
    existing = client.list_topics(timeout=timeout).topics
    inputs = existing.get(settings.interactions_topic)
    changelog = existing.get(settings.changelog_topic)
    if inputs is None and changelog is not None and len(changelog.partitions) < settings.partitions:
        raise TopologyError(  # refuse before creating anything that would then not fit
            f"changelog topic {settings.changelog_topic} has {len(changelog.partitions)} partitions, so "
            f"{settings.interactions_topic} cannot be created with {settings.partitions}: set "
            f"RECO_PARTITIONS={len(changelog.partitions)}, or use a changelog topic (cleanup.policy=compact) "
            f"with {settings.partitions} partitions")

    def partitions(name: str) -> int:
        if name == settings.changelog_topic and inputs is not None and inputs.partitions:
            return len(inputs.partitions)
        return settings.partitions

    wanted = [
        NewTopic(name, num_partitions=partitions(name), replication_factor=settings.replication_factor,
                 config=config)
        for name, config in topic_specs(settings).items() if name not in existing
    ]
    created = []
    for name, future in (client.create_topics(wanted, operation_timeout=timeout).items() if wanted else []):
        try:
            future.result()
            created.append(name)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    if created:
        log.info("created topics %s", ", ".join(created))
    return created


class TopologyError(RuntimeError):
    """The topics exist but cannot work together; the message says how to fix them."""


def check_copartitioned(settings: Settings, timeout: float = 15.0) -> None:
    """Every input partition needs a changelog partition with the same number."""
    topics = admin(settings).list_topics(timeout=timeout).topics
    n_in = len(topics[settings.interactions_topic].partitions)
    n_log = len(topics[settings.changelog_topic].partitions)
    if n_log < n_in:
        raise TopologyError(
            f"changelog topic {settings.changelog_topic} has {n_log} partitions but "
            f"{settings.interactions_topic} has {n_in}: partitions {n_log}..{n_in - 1} could not be "
            f"restored. Create the changelog (cleanup.policy=compact) with {n_in} partitions.")
