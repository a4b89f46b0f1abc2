"""End to end on the real embedded broker: events in, recommendations out, bad input to the DLQ."""
from __future__ import annotations

import re
import time

import jsonschema
import orjson
from helpers import event, latest_by_key, produce, read_all, wait_until

from streams.schemas import load_schema

REC_SCHEMA = load_schema("recommendation")


def assigned(w, n=1):
    return w.value("reco_assigned_partitions") >= n


def test_events_in_recommendations_out(settings_factory, worker_factory):
    s = settings_factory()
    w = worker_factory(s)
    wait_until(lambda: assigned(w, 2), what="partition assignment")
    t = 1_700_000_000_000
    events = []
    for u in range(6):
        user = f"user-{u}"
        for n, item in enumerate(["a", "b", "c", f"x{u}"]):
            events.append(event(user, item, ts=t + 1000 * n, session_id=f"s-{u}"))
    events.append(event("user-0", "b", "purchase", ts=t + 10_000, session_id="s-0"))
    produce(s, [(e["user_id"], e) for e in events])

    last = {}
    for e in events:
        last[e["user_id"]] = e["event_id"]

    def lists():
        view = latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3))
        return view if all(view.get(u, {}).get("trigger", {}).get("event_id") == eid for u, eid in last.items()) else None

    view = wait_until(lists, what="a list per user reflecting their newest event")
    assert set(view) == set(last)
    for user, rec in view.items():
        jsonschema.validate(rec, REC_SCHEMA)
        assert rec["user_id"] == user
        assert rec["items"], f"{user} got an empty list"
        assert all(i["reason"] for i in rec["items"])
    assert "b" not in [i["item_id"] for i in view["user-0"]["items"]], "a purchased item was recommended"
    # item c was co-visited after b by other users: user-0's list must reflect learning
    assert "c" in [i["item_id"] for i in view["user-0"]["items"]]
    assert w.value("reco_events_consumed_total", outcome="applied") == len(events)
    assert w.error is None


def test_invalid_input_goes_to_dead_letter_and_worker_keeps_going(settings_factory, worker_factory):
    s = settings_factory(max_event_bytes=2048)
    w = worker_factory(s)
    wait_until(lambda: assigned(w, 2), what="partition assignment")
    good = event("good-1", "i1")
    bad = [
        (b"u1", b"{not json", "invalid_json"),
        (b"u1", orjson.dumps({"user_id": "u1", "item_id": "i", "type": "teleport", "ts": 1_700_000_000_000}), "schema"),
        (b"u1", orjson.dumps({"user_id": "u1", "item_id": "i", "type": "click", "ts": "yesterday"}), "schema"),
        (b"u1", orjson.dumps({"user_id": "u1", "type": "click", "ts": 1_700_000_000_000}), "schema"),
        (b"u1", orjson.dumps({"user_id": "u1", "item_id": "i", "type": "click", "ts": 99}), "schema"),
        (None, orjson.dumps(event("u1", "i")), "null_key"),
        (b"someone-else", orjson.dumps(event("u1", "i")), "key_mismatch"),
        (b"u1", b"\xff\xfe\xfd", "invalid_utf8"),
        (b"u1", b"[1, 2, 3]", "not_an_object"),
        (b"u1", orjson.dumps({**event("u1", "i"), "pad": "x" * 4000}), "oversized"),
    ]
    produce(s, [(k, v) for k, v, _ in bad] + [(good["user_id"], good)])

    dlq = wait_until(lambda: (m := read_all(s, s.dlq_topic, idle_s=0.3)) and len(m) >= len(bad) and m,
                     what="dead letters")
    assert len(dlq) == len(bad)
    by_record = {(m.key(), m.value()): dict(m.headers()) for m in dlq}
    for key, value, code in bad:
        headers = by_record[(key, value)]  # original key and value kept exactly
        assert headers["dlq.reason.code"].decode() == code
        assert headers["dlq.reason"], "a reason a person can read"
        assert headers["dlq.source.topic"].decode() == s.interactions_topic
    recs = wait_until(lambda: latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)).get("good-1"),
                      what="the valid event after the bad ones")
    assert recs["trigger"]["event_id"] == good["event_id"]
    assert w.value("reco_events_consumed_total", outcome="invalid") == len(bad)
    assert w.value("reco_dlq_writes_total", reason="schema") == 4
    assert w.thread.is_alive() and w.error is None


def test_two_workers_split_partitions_and_both_publish(settings_factory, worker_factory):
    s = settings_factory(partitions=4)
    w1 = worker_factory(s)
    wait_until(lambda: assigned(w1, 4), what="first worker owns all partitions")
    w2 = worker_factory(s)
    wait_until(lambda: assigned(w1) and assigned(w2)
               and w1.value("reco_assigned_partitions") + w2.value("reco_assigned_partitions") == 4,
               what="partitions split between the two workers")
    users = [f"u{n}" for n in range(40)]
    produce(s, [(u, event(u, f"item-{n % 7}", ts=1_700_000_000_000 + n)) for n, u in enumerate(users)])
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      and len(v) == len(users) and v, what="lists for all users")
    assert set(view) == set(users)
    assert w1.value("reco_recommendations_published_total") > 0
    assert w2.value("reco_recommendations_published_total") > 0
    assert (w1.value("reco_recommendations_published_total")
            + w2.value("reco_recommendations_published_total")) == len(users)


def test_one_update_per_user_per_batch(settings_factory, worker_factory):
    s = settings_factory(batch_size=1000, batch_timeout_s=0.5)
    from streams.clients import ensure_topics
    ensure_topics(s)
    evs = [event("busy", f"i{n}", ts=1_700_000_000_000 + n) for n in range(60)]
    produce(s, [("busy", e) for e in evs])  # all waiting before the worker starts
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_events_consumed_total", outcome="applied") == 60, what="all applied")
    wait_until(lambda: w.value("reco_recommendations_published_total") >= 1)
    msgs = [m for m in read_all(s, s.recommendations_topic, idle_s=0.3) if m.key() == b"busy"]
    assert 1 <= len(msgs) <= 3, f"{len(msgs)} updates for 60 events arriving together"
    assert orjson.loads(msgs[-1].value())["trigger"]["event_id"] == evs[-1]["event_id"]


def test_catalogue_rules_unavailable_and_removed_items(settings_factory, worker_factory):
    s = settings_factory()
    from streams.clients import ensure_topics
    ensure_topics(s)
    produce(s, [("c", {"item_id": "c", "category": "hats", "available": False}),
                ("d", {"item_id": "d", "category": "hats"}),
                ("d", None),                                   # tombstone: d is removed
                ("bad", b"{\"category\": 3}")], topic=s.items_topic)
    w = worker_factory(s)
    wait_until(lambda: assigned(w, 2), what="partition assignment")
    t = 1_700_000_000_000
    evs = [event("u1", i, ts=t + n, session_id="s1") for n, i in enumerate(["a", "c", "d", "e"])]
    produce(s, [("u1", e) for e in evs])
    rec = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)).get("u1"))
                     and v["trigger"]["event_id"] == evs[-1]["event_id"] and v, what="u1's list")
    items = [i["item_id"] for i in rec["items"]]
    assert "a" in items and "e" in items
    assert "c" not in items, "unavailable item recommended"
    assert "d" not in items, "removed item recommended"
    dlq = read_all(s, s.dlq_topic, idle_s=0.3)
    assert [dict(m.headers())["dlq.source.topic"].decode() for m in dlq] == [s.items_topic]


def test_events_years_older_than_the_first_ones_do_not_stop_the_worker(settings_factory, worker_factory):
    """Found by a new user: Yoochoose events (2014) after contract events (2023) crashed the
    worker (a zero forward-decay weight became a divisor)."""
    s = settings_factory(partitions=1)
    w = worker_factory(s)
    wait_until(lambda: assigned(w), what="partition assignment")
    t = 1_700_000_000_000
    old = t - 9 * 365 * 24 * 3_600_000
    events = [event("recent", "x", ts=t), event("recent", "y", ts=t + 1000)]
    events += [event("old", item, ts=old + n, session_id="s") for n, item in enumerate("abcab")]
    produce(s, [(e["user_id"], e) for e in events])
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      .get("old", {}).get("trigger", {}).get("event_id") == events[-1]["event_id"] and v,
                      what="a list for the user with the old events")
    assert [i["item_id"] for i in view["old"]["items"]][:2] == ["b", "a"]
    assert w.value("reco_events_consumed_total", outcome="applied") == len(events)
    assert read_all(s, s.dlq_topic, idle_s=0.3) == []
    assert w.thread.is_alive() and w.error is None


def test_an_engine_failure_dead_letters_the_event_and_the_worker_keeps_going(
        settings_factory, worker_factory, monkeypatch):
    """Fault injection: the engine raises on one valid event and while ranking for one user.
    The event goes to the DLQ as engine_error, the list is skipped and counted, and every other
    event is learned and published."""
    from online_models.engine import Engine
    from online_models.ranking.recommender import Recommender

    learn, rank = Engine.learn, Recommender.rank

    def failing_learn(self, ev):
        if ev.item_id == "boom":
            raise RuntimeError("injected learning failure")
        return learn(self, ev)

    def failing_rank(self, user, blend, k=None, user_id="", *args, **kwargs):
        if user_id == "unrankable":
            raise RuntimeError("injected ranking failure")
        return rank(self, user, blend, k, user_id, *args, **kwargs)

    monkeypatch.setattr(Engine, "learn", failing_learn)
    monkeypatch.setattr(Recommender, "rank", failing_rank)
    s = settings_factory(partitions=1)
    w = worker_factory(s)
    wait_until(lambda: assigned(w), what="partition assignment")
    events = [event("u1", "a"), event("u1", "boom"), event("unrankable", "a"), event("u2", "b")]
    produce(s, [(e["user_id"], e) for e in events])
    (dead,) = wait_until(lambda: read_all(s, s.dlq_topic, idle_s=0.3), what="the failed event on the DLQ")
    headers = dict(dead.headers())
    assert headers["dlq.reason.code"] == b"engine_error"
    assert b"injected learning failure" in headers["dlq.reason"]
    assert orjson.loads(dead.value())["event_id"] == events[1]["event_id"]
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      and {"u1", "u2"} <= set(v) and v, what="lists for the other users")
    assert "unrankable" not in view
    assert w.value("reco_publish_failures_total") == 1
    assert w.value("reco_events_consumed_total", outcome="applied") == 3
    assert w.thread.is_alive() and w.error is None


def test_an_unexpected_error_stops_the_worker_without_a_checkpoint(settings_factory, worker_factory, monkeypatch):
    """Found by a new user: after an error mid-batch the worker used to checkpoint on its way
    out — half a batch of state with the positions of all of it — so the rest was skipped for
    good. Now it stops without a checkpoint and the next start replays the batch."""
    from streams.worker.quality import CoverageWindow

    seen = CoverageWindow.seen

    def failing_seen(self, item_id):
        if item_id == "crash":
            raise RuntimeError("injected failure outside the engine")
        return seen(self, item_id)

    monkeypatch.setattr(CoverageWindow, "seen", failing_seen)
    s = settings_factory(partitions=1)
    w = worker_factory(s)
    wait_until(lambda: assigned(w), what="partition assignment")
    events = [event(f"user-{n}", "crash" if n == 5 else "a") for n in range(10)]
    produce(s, [(e["user_id"], e) for e in events])
    w.thread.join(30)
    assert isinstance(w.error, RuntimeError) and not w.thread.is_alive()

    monkeypatch.setattr(CoverageWindow, "seen", seen)
    again = worker_factory(s)
    wait_until(lambda: again.value("reco_events_consumed_total", outcome="applied") == len(events),
               what="the whole batch applied after the restart")
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      and len(v) == len(events) and v, what="a list for every user")
    assert set(view) == {e["user_id"] for e in events}
    again.stop()
    from streams.cli.state_dump import dump_state
    state = orjson.loads(dump_state(s.state_dir, s.interactions_topic))
    assert set(state["users"]) == {e["user_id"] for e in events}
    assert sum(p for p in state["positions"].values() if p) == len(events)


def _bare(user: str, item: str, ts: int, **extra) -> dict:
    """An event as the README's first example sends it: no event_id."""
    return {"user_id": user, "item_id": item, "type": "click", "ts": ts, **extra}


def test_a_recreated_topic_does_not_repeat_derived_event_ids(settings_factory, worker_factory):
    """Found by a new user: ids derived from topic/partition/offset repeated after the topic was
    recreated (offsets restart at 0), so new events were dropped as duplicates."""
    from confluent_kafka.admin import NewTopic

    from streams.clients import admin

    s = settings_factory(partitions=1)
    t = int(time.time() * 1000)
    w = worker_factory(s)
    wait_until(lambda: assigned(w), what="partition assignment")
    produce(s, [("bob", _bare("bob", item, t + n)) for n, item in enumerate("abcde")])
    wait_until(lambda: w.value("reco_events_consumed_total", outcome="applied") == 5, what="first events")
    w.stop()

    client = admin(s)
    for f in client.delete_topics([s.interactions_topic]).values():
        f.result()
    wait_until(lambda: s.interactions_topic not in client.list_topics(timeout=5).topics, what="topic gone")
    for f in client.create_topics([NewTopic(s.interactions_topic, 1, 1)]).values():
        f.result()
    time.sleep(0.01)  # the new records' timestamps differ from the old ones'
    produce(s, [("bob", _bare("bob", item, t + 10 + n)) for n, item in enumerate("xyz")])

    # same state dir: bob's derived ids for offsets 0..4 are stored, and position 5 is now out of
    # range (the new topic ends at 3), so the worker starts again at offset 0
    again = worker_factory(s)
    wait_until(lambda: again.value("reco_events_consumed_total", outcome="applied") == 3, timeout=60,
               what="the recreated topic's events applied, none taken for duplicates")
    assert again.value("reco_offset_resets_total") == 1
    assert again.value("reco_events_consumed_total", outcome="duplicate") == 0
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      .get("bob", {}).get("trigger", {}).get("ts") == t + 12 and v, what="bob's newest list")
    assert re.fullmatch(rf"{s.interactions_topic}/0/2@\d+", view["bob"]["trigger"]["event_id"])


def test_an_event_from_the_far_future_is_refused_not_learned(settings_factory, worker_factory):
    """Found by a new user: one event stamped 2100 moved every decayed model's clock 77 years
    ahead, and co-visitation and trending learned nothing from the events after it."""
    s = settings_factory(partitions=1)
    w = worker_factory(s)
    wait_until(lambda: assigned(w), what="partition assignment")
    t = int(time.time() * 1000)
    events = [_bare(f"s{n}", item, t + n) for n in range(6) for item in ("a", "b")]
    poison = _bare("zz", "zz-item", 4_102_444_800_000)
    skewed = _bare("late-clock", "a", t + 30 * 60_000)  # half an hour ahead: clock skew, accepted
    whole_float = {**_bare("carol", "a", 0), "ts": float(t + 100)}  # JSON Schema's integer admits 1.0
    produce(s, [(e["user_id"], e) for e in [events[0], poison, *events[1:], skewed, whole_float]])
    produce(s, [("u", _bare("u", "a", t + 200))])
    view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                      and "u" in v and "carol" in v and v, what="lists after the poison")
    assert view["u"]["items"][0]["item_id"] in ("a", "b")
    assert any(i["item_id"] == "b" and i["reason"] == "because you clicked a" for i in view["u"]["items"])
    dead = read_all(s, s.dlq_topic, idle_s=0.3)
    assert [dict(m.headers())["dlq.reason.code"] for m in dead] == [b"ts_in_future"]
    assert b"ahead of the record's timestamp" in dict(dead[0].headers())["dlq.reason"]
    assert w.value("reco_events_consumed_total", outcome="applied") == len(events) + 3
    assert "zz" not in view and view["carol"]["trigger"]["ts"] == t + 100


def test_a_broker_that_comes_back_empty_stops_the_worker_with_the_fix(settings_factory, worker_factory, tmp_path):
    """Found by a new user: after the embedded broker restarted empty (memory only), the worker
    sat on zero partitions for good while /readyz said ready."""
    from streams.broker import EmbeddedBroker, free_port

    port = free_port()
    first = EmbeddedBroker(port).start()
    try:
        s = settings_factory(partitions=1, bootstrap_servers=first.bootstrap)
        w = worker_factory(s)
        wait_until(lambda: assigned(w), what="partition assignment")
        produce(s, [("bob", _bare("bob", "a", int(time.time() * 1000)))])
        wait_until(lambda: w.value("reco_events_consumed_total", outcome="applied") == 1, what="an event applied")
        first.stop()
        wait_until(lambda: w.value("reco_ready") == 0, timeout=30, what="not ready while the broker is away")
        with EmbeddedBroker(port):  # back, but with no topics at all
            wait_until(lambda: w.value("reco_ready") == 0 and not w.thread.is_alive(), timeout=90,
                       what="the worker to stop once the topic has stayed unknown")
    finally:
        first.stop()
    assert "input topic" in str(w.error) and "has not existed on" in str(w.error), w.error
    assert "start the worker again to recreate the topics" in str(w.error)
