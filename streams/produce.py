"""Send contract events (from JSONL, YOOCHOOSE or OTTO files) to the interactions topic, and the
catalogue records a contract JSONL file may carry to the items topic."""
from __future__ import annotations

import time
from typing import Callable, Iterable

import orjson

from online_models.datasets import is_item_record

from . import clients
from .settings import Settings


class RateLimiter:
    """Paces a loop to `rate` iterations per second (None: unlimited)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        self.next_at += self.interval
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def produce_events(settings: Settings, events: Iterable[dict], rate: float | None = None,
                   retime: bool = False, on_sent: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> int:
    """Produce events keyed by user id (catalogue records: to the items topic, keyed by item id);
    `retime` stamps each event with the current time (demo). Returns the number delivered
    (confirmed by the broker); raises if any delivery failed. `should_stop` ends the sending early,
    also while waiting for room in the local queue."""
    producer = clients.producer(settings)
    failures: list[str] = []
    done = [0]

    def delivered(err, msg):
        if err is not None:
            failures.append(err.str())
        else:
            done[0] += 1

    stopped = should_stop or (lambda: False)
    limiter = RateLimiter(rate)
    sent = 0
    for event in events:
        if stopped():
            break
        if is_item_record(event):
            topic, key = settings.items_topic, str(event["item_id"])
        else:
            user = event.get("user_id")  # invalid events are sent as they are: the worker dead-letters them
            topic, key = settings.interactions_topic, None if user is None else str(user)
            if retime:
                event = {**event, "ts": int(time.time() * 1000)}
        while True:
            try:
                producer.produce(topic, key=key, value=orjson.dumps(event), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full (a slow or absent broker)
                if stopped():
                    break
                producer.poll(0.1)
        if stopped():
            break
        producer.poll(0)
        sent += 1
        if on_sent:
            on_sent(event)
        limiter.wait()
    undelivered = producer.flush(settings.delivery_timeout_s)
    if failures or undelivered:
        raise RuntimeError(f"{len(failures) + undelivered} of {sent} records were not delivered"
                           + (f": {failures[0]}" if failures else f" within {settings.delivery_timeout_s:g} s"))
    return done[0]
