"""Follow the recommendations topic."""
from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams import clients
from streams.settings import Settings


class NotARecommendation(ValueError):
    """A record on the recommendations topic that is not a recommendation.v1 value."""


def follow(settings: Settings, from_beginning: bool = False, timeout_s: float | None = None,
           should_stop: Callable[[], bool] | None = None,
           idle: bool = False) -> Iterator[tuple[str, dict | None, int] | None]:
    """Yield (user id, recommendation or None for a deleted list, publish time ms) as they arrive
    (no consumer group: every partition). A record that is not a recommendation raises
    NotARecommendation (a wrong topic, e.g. the DLQ: `reco dlq` reads that).

    Reads from the start and skips records written before the call unless `from_beginning`:
    seeking to the end relies on ListOffsets, which the embedded broker answers unreliably.
    With `idle`, yields None after each empty poll so a caller can refresh a display."""
    consumer = clients.consumer(settings, group_id=f"reco-tail-{uuid.uuid4().hex[:8]}")
    topic = settings.recommendations_topic
    since_ms = 0 if from_beginning else int(time.time() * 1000) - 1000
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)])
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while not (should_stop and should_stop()):
            if deadline and time.monotonic() > deadline:
                return
            msgs = consumer.consume(500, 0.2)
            for msg in msgs:
                if msg.error() is not None or msg.timestamp()[1] < since_ms:
                    continue
                user = (msg.key() or b"").decode("utf-8", "replace")
                if msg.value() is None:  # a tombstone: forgotten, opted out or deleted by the TTL
                    yield user, None, msg.timestamp()[1]
                    continue
                try:
                    rec = orjson.loads(msg.value())
                except orjson.JSONDecodeError:
                    rec = None
                if not isinstance(rec, dict) or not isinstance(rec.get("items"), list) or "user_id" not in rec:
                    raise NotARecommendation(
                        f"{topic}[{msg.partition()}]@{msg.offset()} is not a recommendation (recommendation.v1): "
                        f"is {topic} the recommendations topic? The DLQ is read with `reco dlq`")
                yield user, rec, msg.timestamp()[1]
            if idle and not msgs:
                yield None
    finally:
        consumer.close()


def format_deleted(user_id: str) -> str:
    """A tombstone says no more than that the list is gone, not which request removed it."""
    return f"{user_id:>12}  list deleted (forgotten, opted out or expired)"


def format_line(rec: dict, width: int = 5) -> str:
    items = ", ".join(i["item_id"] for i in rec["items"][:width])
    more = f" (+{len(rec['items']) - width})" if len(rec["items"]) > width else ""
    first_reason = rec["items"][0]["reason"] if rec["items"] else "-"
    return f"{rec['user_id']:>12}  [{rec['variant']}]  {items}{more}  — {first_reason}"
