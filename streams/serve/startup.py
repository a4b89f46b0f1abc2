"""Checks `reco serve` makes before it starts faust and while it runs, so that what would
otherwise be a traceback or a crash-looping agent is one line naming what to change."""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import NamedTuple

from streams import clients
from streams.settings import Settings

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """`reco serve` cannot start or go on; the message says why and what to do."""


def check_port(host: str, port: int) -> None:
    """faust binds its web server only after the table is restored, and a busy port then ends
    in a long traceback: try the address first (as aiohttp binds it, SO_REUSEADDR)."""
    try:
        socket.create_server((host, port)).close()
    except OSError as e:
        raise ServeError(f"cannot serve on {host}:{port}: {os.strerror(e.errno) if e.errno else e}; choose another port with "
                         "--port / RECO_SERVE_PORT, or another address with RECO_SERVE_HOST") from None


def table_changelog(settings: Settings, table: str) -> str:
    """The topic faust keeps the serving table's changelog in."""
    return f"{settings.serve_group_id}-{table}-changelog"


def serving_partitions(settings: Settings, table: str, timeout: float = 15.0) -> int:
    """The serving table is partitioned like `recommendations`: the topic's partition count,
    whatever RECO_PARTITIONS says (that setting is for topics the engine creates). A table
    changelog left with another count (by an earlier `reco serve` with other topics) would crash
    the agent on every list of a partition it lacks: refused."""
    topics = clients.admin(settings).list_topics(timeout=timeout).topics
    n = len(topics[settings.recommendations_topic].partitions)
    if n != settings.partitions:
        log.info("%s has %d partitions: the serving table has %d too (RECO_PARTITIONS=%d is for "
                 "topics the engine creates)", settings.recommendations_topic, n, n, settings.partitions)
    changelog = topics.get(table_changelog(settings, table))
    if changelog is not None and changelog.partitions and len(changelog.partitions) != n:
        raise ServeError(
            f"the serving table's changelog topic {changelog.topic} has {len(changelog.partitions)} "
            f"partitions but {settings.recommendations_topic} has {n}: delete {changelog.topic} "
            f"(`reco serve` recreates it and refills the table from {settings.recommendations_topic}) "
            "or set another RECO_SERVE_GROUP_ID")
    return n


TOPIC_GONE_AFTER_S = 20.0  # as the worker's: unknown to the broker this long is deleted, not a blip


class TopicWatch:
    """Stops `reco serve` when `recommendations` is not the topic it started on: the broker keeps
    saying it does not exist, or it has another topic id (an embedded broker restarted without
    its data and the topic came back empty, e.g. auto-created by a client's metadata request).
    The table would go on serving lists the broker no longer has, and faust crashes later anyway
    with a traceback. "Does not exist" counts only when it lasts TOPIC_GONE_AFTER_S; an outage
    never counts."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.admin = clients.admin(settings)  # one for the process
        found = describe(self.admin, settings.recommendations_topic)
        self.topic_id = found.topic_id if found is not None else None
        self._missing_since: float | None = None

    def check(self) -> None:
        topic = self.settings.recommendations_topic
        try:
            found = describe(self.admin, topic)
        except UnknownTopic:
            now = time.monotonic()
            self._missing_since = self._missing_since or now
            if now - self._missing_since >= TOPIC_GONE_AFTER_S:
                raise ServeError(broker_lost(self.settings, f"{topic} has not existed for {TOPIC_GONE_AFTER_S:.0f} s"))
            return
        self._missing_since = None
        if found is not None and None not in (found.topic_id, self.topic_id) and found.topic_id != self.topic_id:
            raise ServeError(broker_lost(self.settings, f"{topic} has a new topic id"))


class UnknownTopic(LookupError):
    """The broker says the topic does not exist."""


class Described(NamedTuple):
    partitions: int
    topic_id: str | None  # None: the broker gives none


def describe(admin, topic: str, timeout: float = 3.0) -> Described | None:
    """A topic's partition count and id; None when the broker cannot be asked (an outage).
    DescribeTopics, not a metadata request: a metadata request from this client makes a broker
    that allows it (the embedded one does) auto-create the topic, with default settings."""
    from confluent_kafka import KafkaError, KafkaException, TopicCollection

    try:
        found = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic].result()
    except KafkaException as e:
        error = e.args[0] if e.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise UnknownTopic(topic) from None
        return None
    return Described(len(found.partitions), str(found.topic_id) if found.topic_id is not None else None)


def broker_lost(settings: Settings, what: str) -> str:
    return (f"the broker at {settings.bootstrap_servers} lost its topics ({what}: it restarted without "
            "its data, or the topic was deleted); start reco serve again")
