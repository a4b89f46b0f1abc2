"""ts_in_future must hold against a producer that also dates the Kafka record in 2099 (issue 11
item 5): `interactions` is created with broker-stamped record times (LogAppendTime), and where
records still carry producer stamps (an older topic, or the embedded broker, which ignores the
setting) the worker's clock is the guard; an older topic is warned about once."""
from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from helpers import latest_by_key, read_all, wait_until

from streams.clients import admin
from streams.worker.record_time import LOG_APPEND_TIME, timestamp_type

Y2099 = 4_070_908_800_000


def click(user: str, item: str, ts: int) -> dict:
    return {"user_id": user, "item_id": item, "type": "click", "ts": ts}


def send(s, events: list[tuple[dict, int | None]]) -> None:
    """A real producer; the record timestamp set explicitly where given (an ordinary option)."""
    p = Producer({"bootstrap.servers": s.bootstrap_servers})
    for ev, record_ts in events:
        p.produce(s.interactions_topic, key=ev["user_id"], value=orjson.dumps(ev),
                  **({"timestamp": record_ts} if record_ts is not None else {}))
    assert p.flush(10) == 0


def test_an_event_whose_record_is_dated_2099_too_is_refused(settings_factory, worker_factory, caplog):
    s = settings_factory(partitions=1)
    caplog.set_level(logging.WARNING, logger="streams.worker.record_time")
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_assigned_partitions") >= 1, what="partition assignment")
    assert timestamp_type(s) == LOG_APPEND_TIME, "interactions is created with broker-stamped times"
    t = int(time.time() * 1000)
    normal = [click(f"s{n}", item, t + n) for n in range(6) for item in ("a", "b")]
    send(s, [(normal[0], None), (click("zz", "zz-item", Y2099), Y2099)] + [(e, None) for e in normal[1:]])
    send(s, [(click("u", "a", t + 200), None)])
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      and "u" in v and v, what="u's list after the poison")
    dead = read_all(s, s.dlq_topic, idle_s=0.3)
    assert [dict(m.headers())["dlq.reason.code"] for m in dead] == [b"ts_in_future"]
    assert b"ahead of the clock" in dict(dead[0].headers())["dlq.reason"]
    # the clocks did not jump to 2099: the events after the poison still taught co-visitation
    assert any(i["item_id"] == "b" and i["reason"] == "because you clicked a" for i in view["u"]["items"])
    assert "zz" not in view
    ignored = [r for r in caplog.records if "delivers producer timestamps" in r.getMessage()]
    assert len(ignored) == 1, "the embedded broker ignores LogAppendTime: said once, not per event"


def test_a_topic_with_producer_timestamps_is_warned_about_once_at_start(settings_factory, worker_factory,
                                                                        caplog):
    s = settings_factory(partitions=1)
    client = admin(s)  # kept alive until the topic exists
    client.create_topics([NewTopic(s.interactions_topic, 1, 1)])[s.interactions_topic].result(10)  # as before
    caplog.set_level(logging.WARNING, logger="streams.worker.record_time")
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_assigned_partitions") >= 1, what="partition assignment")
    t = int(time.time() * 1000)
    send(s, [(click(f"u{n}", "a", t + n), None) for n in range(20)])
    wait_until(lambda: w.value("reco_events_consumed_total", outcome="applied") == 20, what="events applied")
    warned = [r.getMessage() for r in caplog.records if r.name == "streams.worker.record_time"]
    assert len(warned) == 1 and "message.timestamp.type=CreateTime" in warned[0], warned
