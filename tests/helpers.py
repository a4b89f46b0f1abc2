"""Test helpers over the real broker: produce, read a topic, wait for a condition."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from typing import Callable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from streams.settings import Settings


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.1, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def produce(settings: Settings, records: list[tuple[bytes | str | None, bytes | dict | None]],
            topic: str | None = None) -> dict[int, int]:
    """Produce and confirm every record; returns the end offset reached per partition."""
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 2})
    errors, ends = [], {}

    def delivered(err, msg):
        if err:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for key, value in records:
        if isinstance(value, dict):
            value = orjson.dumps(value)
        while True:
            try:
                p.produce(topic or settings.interactions_topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(30) == 0
    assert not errors, errors
    return ends


def read_all(settings: Settings, topic: str, idle_s: float = 1.0, timeout: float = 30) -> list:
    """Every message currently in the topic (all partitions, from the beginning)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out, eof, deadline = [], set(), time.monotonic() + timeout
        last_msg = time.monotonic()
        while time.monotonic() < deadline:
            msgs = c.consume(1000, 0.2)
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                out.append(m)
                last_msg = time.monotonic()
            if len(eof) == len(parts) and time.monotonic() - last_msg >= idle_s:
                break
        return out
    finally:
        c.close()


def latest_by_key(msgs) -> dict[str, dict]:
    """The compacted view of a keyed JSON topic."""
    view = {}
    for m in msgs:
        if m.value() is None:
            view.pop(m.key().decode(), None)
        else:
            view[m.key().decode()] = orjson.loads(m.value())
    return view


def event(user: str, item: str, type_: str = "click", ts: int = 1_700_000_000_000, **extra) -> dict:
    return {"event_id": extra.pop("event_id", f"{user}-{item}-{ts}-{type_}"), "user_id": user,
            "item_id": item, "type": type_, "ts": ts, **extra}


def http(url: str, method: str = "GET", timeout: float = 5) -> tuple[int, str]:
    """(status, body) over real HTTP; status 0 when nothing answers."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""
