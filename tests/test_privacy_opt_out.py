"""Opt-out / opt-in (issue 15): markers in order with the user's events, as forget is (decision
0004) — real broker, real RocksDB, a worker thread or real worker processes."""
from __future__ import annotations

import subprocess
import sys

import jsonschema
import orjson
from confluent_kafka import Producer
from helpers import event, http, latest_by_key, read_all, wait_until
from test_recovery_changelog import make_settings
from workers import spawn, stop, wait_caught_up, worker_env

from online_models.catalog import Catalog
from online_models.config import EngineConfig
from online_models.engine import Engine
from online_models.evaluation.synthetic import interactions
from online_models.events import Interaction
from online_models.ranking.recommender import NOT_PERSONALISED
from online_models.state.store import OPT_OUT, USER, PartitionStore, partition_stores, user_key
from streams.broker import free_port
from streams.cli.state_dump import dump_state
from streams.clients import ensure_topics
from streams.control import control_request
from streams.schemas import load_schema
from streams.serve.app import forget_request
from streams.worker.decode import CONTROL_HEADER, Rejected, UserControl, decode_control

REC_SCHEMA = load_schema("recommendation")
T = 1_700_000_000_000


def opt_key(user: str) -> bytes:
    return OPT_OUT + user_key(user)[len(USER):]


def marker(user: str, action: str) -> tuple:
    return ("marker", user, action)


def send(s, items) -> dict[int, int]:
    """Events and control markers in one ordered stream: a marker goes to every partition, as
    `reco serve` forwards it. Returns the end offset reached per partition."""
    p = Producer({"bootstrap.servers": s.bootstrap_servers, "enable.idempotence": True, "linger.ms": 2})
    ends: dict[int, int] = {}

    def delivered(err, msg):
        assert err is None, err
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for item in items:
        if isinstance(item, tuple):
            _, user, action = item
            value = control_request(user, action, requested_at_ms=T)
            for partition in range(s.partitions):
                p.produce(s.interactions_topic, key=user.encode(), value=value, partition=partition,
                          headers=[(CONTROL_HEADER, action.encode())], on_delivery=delivered)
        else:
            p.produce(s.interactions_topic, key=item["user_id"].encode(), value=orjson.dumps(item),
                      on_delivery=delivered)
        p.poll(0)
    assert p.flush(30) == 0
    return ends


def opt_out_rows(state_dir, topic) -> set[bytes]:
    rows = set()
    for path in partition_stores(state_dir, topic).values():
        store = PartitionStore(path, read_only=True)
        rows |= {key for key, _ in store.scan(OPT_OUT)}
        store.close()
    return rows


def list_after(s, user: str, event_id: str) -> dict:
    def latest():
        rec = latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)).get(user)
        return rec if rec and rec["trigger"]["event_id"] == event_id else None
    return wait_until(latest, timeout=60, what=f"{user}'s list after {event_id}")


def test_opt_out_keeps_no_profile_and_lists_are_not_personalised_until_opt_in(settings_factory, worker_factory):
    s = settings_factory()
    w = worker_factory(s)
    wait_until(lambda: w.value("reco_assigned_partitions") >= 2, what="partition assignment")
    mobile = {"context": {"device": "mobile"}}
    crowd = [event(f"bob{n}", f"i{n % 3}", ts=T + 100 * n, **mobile) for n in range(12)]
    before = [event("alice", f"i{n}", ts=T + 10_000 + 1000 * n, session_id="s1", **mobile) for n in range(4)]
    send(s, crowd + before)
    rec = list_after(s, "alice", before[-1]["event_id"])
    assert "personalized" not in rec and any(i["reason"].startswith("you ") for i in rec["items"])

    # Opt out: the profile goes; later events (and carol's, who opted out before her first) build none.
    after = [event("alice", f"i{n}", ts=T + 20_000 + 1000 * n, session_id="s1", **mobile) for n in range(5, 8)]
    carol = [event("carol", "i1", ts=T + 30_000, context={"device": "tv"})]
    send(s, [marker("alice", "opt_out"), marker("carol", "opt_out")] + after + carol)
    for user, last in (("alice", after[-1]), ("carol", carol[-1])):
        rec = list_after(s, user, last["event_id"])
        jsonschema.validate(rec, REC_SCHEMA)
        assert rec["personalized"] is False and rec["updated_at"] == last["ts"]
        assert rec["items"] and all(i["reason"].startswith(NOT_PERSONALISED) for i in rec["items"]), rec
    alice = {i["item_id"]: i["reason"] for i in list_after(s, "alice", after[-1]["event_id"])["items"]}
    assert "not personalised: popular on mobile" in alice.values()  # context by the event's device
    assert w.value("reco_events_consumed_total", outcome="opted_out") == len(after) + len(carol)

    def users():
        return orjson.loads(dump_state(s.state_dir, s.interactions_topic))["users"]
    wait_until(lambda: opt_out_rows(s.state_dir, s.interactions_topic) and "alice" not in users(),
               what="alice's row deleted and the opt-out checkpointed")
    assert "carol" not in users() and "bob0" in users()
    expected = {opt_key(u) for u in ("alice", "carol")}
    assert opt_out_rows(s.state_dir, s.interactions_topic) == expected  # on every partition's store
    changelog = read_all(s, s.changelog_topic, idle_s=0.3)
    assert any(m.key() == user_key("alice") and m.value() is None for m in changelog), "no changelog tombstone"
    assert {m.key() for m in changelog if m.key().startswith(OPT_OUT) and m.value()} == expected

    # Opt in: the marker goes and the next events build a profile from empty.
    again = [event("alice", f"i{n}", ts=T + 40_000 + 1000 * n, session_id="s2", **mobile) for n in range(2)]
    send(s, [marker("alice", "opt_in")] + again)
    rec = list_after(s, "alice", again[-1]["event_id"])
    assert "personalized" not in rec and any(i["reason"].startswith("you ") for i in rec["items"])
    wait_until(lambda: "alice" in users(), what="alice's new profile checkpointed")
    assert users()["alice"]["counts"] == {"click": 2}, "the profile must start empty after opt-in"
    assert opt_out_rows(s.state_dir, s.interactions_topic) == {opt_key("carol")}
    assert w.error is None


def test_opted_out_events_feed_the_anonymous_aggregates_only_when_the_setting_says_so(tmp_path):
    evs = [Interaction(f"e{n}", "alice", f"i{n % 3}", "click", T + 1000 * n, context={"device": "mobile"})
           for n in range(5)]
    for feed in (False, True):
        engine = Engine(PartitionStore(tmp_path / str(feed)), Catalog(),
                        EngineConfig(opted_out_feed_aggregates=feed))
        engine.opt_out("alice")
        engine.checkpoint(0)
        assert all(engine.learn(ev).opted_out for ev in evs)
        rows = engine.checkpoint(1)
        assert user_key("alice") not in rows
        models = {k.split(b"\x00")[1] for k in rows if k.startswith(b"m\x00")}
        assert models == ({b"trending", b"context", b"mf", b"popular"} if feed else set())


def test_a_marker_must_name_its_request_s_action_and_forget_user_v1_values_still_decode():
    assert decode_control(b"a", control_request("a", "opt_out"), b"opt_out") == UserControl("a", "opt_out")
    mismatch = decode_control(b"a", control_request("a", "opt_out"), b"forget_user")
    assert isinstance(mismatch, Rejected) and mismatch.code == "schema"
    legacy = orjson.dumps({"user_id": "a", "action": "forget_user"})  # a forget-user.v1 value
    jsonschema.validate(orjson.loads(legacy), load_schema("forget-user"))
    assert decode_control(b"a", legacy, b"forget_user") == UserControl("a", "forget_user")
    assert decode_control(b"a", forget_request("a"), b"forget_user") == UserControl("a", "forget_user")


def test_reco_opt_out_writes_a_control_request_and_refuses_a_bad_id(broker, tmp_path):
    s = make_settings(broker, tmp_path)
    env = worker_env(s)
    run = [sys.executable, "-m", "streams.cli.main"]
    done = subprocess.run(run + ["opt-out", "alice"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(run + ["opt-in", "alice"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    values = [orjson.loads(m.value()) for m in read_all(s, s.control_topic, idle_s=0.3)]
    assert [(v["user_id"], v["action"]) for v in values] == [("alice", "opt_out"), ("alice", "opt_in")]
    jsonschema.validate(values[0], load_schema("user-control"))
    bad = subprocess.run(run + ["opt-out", "a\x01b"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: invalid user id") and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_kill9_between_opt_out_and_opt_in_replays_to_the_same_outcome(broker, tmp_path):
    evs = interactions(3000, n_users=60, n_items=80, seed=5)
    third = len(evs) // 3
    active = {e["user_id"] for e in evs[2 * third:]}
    opted = sorted({e["user_id"] for e in evs[:third]} & active)[:8]
    part1 = evs[:third] + [marker(u, "opt_out") for u in opted] + evs[third:2 * third]
    part2 = [marker(u, "opt_in") for u in opted[:4]] + evs[2 * third:]

    ref = make_settings(broker, tmp_path / "ref")
    ensure_topics(ref)
    ends = send(ref, part1 + part2)
    proc = spawn(ref)
    wait_caught_up([ref.state_dir], ref.interactions_topic, ends, procs=[proc])
    assert stop(proc) == 0
    reference = (dump_state(ref.state_dir, ref.interactions_topic), opt_out_rows(ref.state_dir, ref.interactions_topic),
                 latest_by_key(read_all(ref, ref.recommendations_topic, idle_s=0.5)))
    assert reference[1] == {opt_key(u) for u in opted[4:]}
    assert not set(opted[4:]) & set(orjson.loads(reference[0])["users"])
    assert {reference[2][u].get("personalized") for u in opted} == {False, None}  # 4 opted out, 4 back in

    s = make_settings(broker, tmp_path / "run")
    ensure_topics(s)
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    ends = send(s, part1)
    a = spawn(s, dir_a, log=tmp_path / "a.log")
    wait_caught_up([dir_a], s.interactions_topic, ends, procs=[a])
    assert stop(a) == 0
    # Then killed half-way through the changelog writes of its first checkpoint of part 2:
    ends = send(s, part2)
    a = spawn(s, dir_a, log=tmp_path / "a2.log", env={"RECO_FAULT_KILL_IN_CHECKPOINT": "1"})
    assert a.wait(120) == -9, "the fault point must SIGKILL the worker"
    b = spawn(s, dir_b, log=tmp_path / "b.log")  # a new host: the opt-outs come back from the changelog
    wait_caught_up([dir_b], s.interactions_topic, ends, procs=[b])
    assert stop(b) == 0
    assert dump_state(dir_b, s.interactions_topic) == reference[0]
    assert opt_out_rows(dir_b, s.interactions_topic) == reference[1]
    assert latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.5)) == reference[2]


def test_opt_out_and_opt_in_over_http_reach_the_worker_in_order(settings_factory, tmp_path):
    s = settings_factory()
    ensure_topics(s)
    port = free_port()
    worker = spawn(s, log=tmp_path / "worker.log")
    serve = spawn(s, log=tmp_path / "serve.log", command="serve",
                  env={"RECO_SERVE_PORT": str(port), "RECO_SERVE_GROUP_ID": f"{s.group_id}-serve"})
    base = f"http://127.0.0.1:{port}"

    def served(user):
        status, body = http(f"{base}/recommendations/{user}/")
        return orjson.loads(body) if status == 200 else None
    try:
        first = event("dana", "i1", ts=T, context={"device": "mobile"})
        send(s, [event(f"bob{n}", f"i{n % 3}", ts=T + n) for n in range(6)] + [first])
        wait_until(lambda: (served("dana") or {}).get("trigger", {}).get("event_id") == first["event_id"],
                   timeout=90, interval=0.5, what="dana's personalised list served")
        assert http(f"{base}/users/a%01b/opt-out/", "POST")[0] == 400
        status, body = http(f"{base}/users/dana/opt-out", "POST")
        assert status == 202 and orjson.loads(body)["status"] == "accepted"
        wait_until(lambda: http(f"{base}/recommendations/dana/")[0] == 404, timeout=60, interval=0.5,
                   what="dana's personalised list withdrawn")
        later = event("dana", "i2", ts=T + 60_000, context={"device": "mobile"})
        send(s, [later])
        rec = wait_until(lambda: (r := served("dana")) and r["trigger"]["event_id"] == later["event_id"] and r,
                         timeout=60, interval=0.5, what="dana's non-personalised list")
        assert rec["personalized"] is False and all(i["reason"].startswith(NOT_PERSONALISED) for i in rec["items"])

        assert http(f"{base}/users/dana/opt-in/", "POST")[0] == 202
        wait_until(lambda: sum(dict(m.headers() or ()).get(CONTROL_HEADER) == b"opt_in"
                               for m in read_all(s, s.interactions_topic, idle_s=0.2)) == s.partitions,
                   timeout=30, what="the opt-in marker on every partition")
        again = event("dana", "i3", ts=T + 120_000, context={"device": "mobile"})
        send(s, [again])
        rec = wait_until(lambda: (r := served("dana")) and r["trigger"]["event_id"] == again["event_id"] and r,
                         timeout=60, interval=0.5, what="dana's list after opting in")
        assert "personalized" not in rec
    finally:
        codes = stop(serve), stop(worker)
    assert codes == (0, 0)
