"""`reco dlq`: what the worker rejected and why — each dead-lettered record's reason, where it
came from and a preview of its bytes (schemas/dead-letter.v1.json)."""
from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streams import clients
from streams.settings import Settings

PREVIEW_CHARS = 80


def preview(value: bytes | None, limit: int = PREVIEW_CHARS) -> str:
    """The start of the original value, printable: invalid UTF-8 and control characters escaped."""
    if value is None:
        return "(null value)"
    text = value[: limit * 4].decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rejected(settings: Settings, from_beginning: bool = False, follow: bool = False, timeout_s: float | None = None,
             should_stop: Callable[[], bool] | None = None) -> Iterator[dict]:
    """Dead-letter records as dicts, oldest first per partition. Without `follow`, ends once the
    topic has been read to its end (and after `timeout_s` in any case); without
    `from_beginning`, only records dead-lettered from now on."""
    consumer = clients.consumer(settings, group_id=f"reco-dlq-{uuid.uuid4().hex[:8]}",
                                **{"enable.partition.eof": True})
    topic = settings.dlq_topic
    since_ms = 0 if from_beginning else int(time.time() * 1000) - 1000
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        partitions = sorted(meta.partitions) if meta is not None and meta.partitions else []
        if not partitions:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while not (should_stop and should_stop()):
            if deadline and time.monotonic() > deadline:
                return
            for msg in consumer.consume(500, 0.2):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    continue
                at_end.discard(msg.partition())
                if msg.timestamp()[1] < since_ms:
                    continue
                headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or []) if v is not None}
                yield {"reason_code": headers.get("dlq.reason.code", ""), "reason": headers.get("dlq.reason", ""),
                       "source": {"topic": headers.get("dlq.source.topic"),
                                  "partition": _int(headers.get("dlq.source.partition")),
                                  "offset": _int(headers.get("dlq.source.offset"))},
                       "dlq_offset": msg.offset(), "dlq_partition": msg.partition(),
                       "key": None if msg.key() is None else preview(msg.key(), 200),
                       "value_preview": preview(msg.value())}
            if not follow and at_end >= set(partitions):
                return
    finally:
        consumer.close()


def format_line(rec: dict) -> str:
    src, code, reason = rec["source"], rec["reason_code"] or "?", rec["reason"]
    if reason.startswith(f"{code}: "):  # the `schema` reasons name their code already: say it once
        reason = reason[len(code) + 2:]
    return (f"{src['topic']}[{src['partition']}]@{src['offset']}  {code}: {reason}\n"
            f"    {rec['value_preview']}")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
