"""`reco dlq` shows every rejected record with its reason and origin; `reco tail` shows deleted
lists and refuses a topic that is not recommendations in one line — real broker, CLI processes."""
from __future__ import annotations

import subprocess

import orjson
from helpers import event, produce, read_all, wait_until
from test_cli import RECO, env_for


def test_dlq_prints_each_rejected_record_with_reason_and_source(settings_factory, worker_factory):
    s = settings_factory()
    good = event("u1", "i1")
    ends = produce(s, [("u1", good), ("u1", b"{oops"), ("u2", {**event("u2", "i2"), "type": "VIEW"}),
                       (None, good)])
    w = worker_factory(s)
    wait_until(lambda: len(read_all(s, s.dlq_topic, idle_s=0.2)) == 3, timeout=60, what="3 dead letters")
    w.stop()
    done = subprocess.run(RECO + ["dlq", "--from-beginning"], env=env_for(s), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for code in ("invalid_json", "schema", "null_key"):
        assert code in out
    assert "  schema: data.type must be one of" in out and "schema: schema:" not in out  # the code once
    assert f"{s.interactions_topic}[" in out and "{oops" in out and "3 rejected records" in done.stderr
    as_json = subprocess.run(RECO + ["dlq", "--from-beginning", "--json"], env=env_for(s), capture_output=True,
                             text=True, timeout=60)
    recs = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert sorted(r["reason_code"] for r in recs) == ["invalid_json", "null_key", "schema"]
    assert all(r["source"]["topic"] == s.interactions_topic and r["source"]["offset"] < sum(ends.values())
               for r in recs)


def test_tail_prints_a_forgotten_users_deletion_and_refuses_a_wrong_topic(settings_factory):
    s = settings_factory()
    rec = {"user_id": "alice", "items": [{"item_id": "i1", "score": 1.0, "reason": "trending now"}],
           "variant": "control", "model_version": "v1", "updated_at": 1, "trigger": {"event_id": "e", "ts": 1}}
    produce(s, [("alice", rec), ("alice", None)], topic=s.recommendations_topic)
    done = subprocess.run(RECO + ["tail", "--from-beginning", "--user", "alice", "--json", "--timeout", "5"],
                          env=env_for(s), capture_output=True, text=True, timeout=60)
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert lines == [rec, None]
    text = subprocess.run(RECO + ["tail", "--from-beginning", "--timeout", "5"], env=env_for(s),
                          capture_output=True, text=True, timeout=60)
    assert "alice  list deleted (forgotten, opted out or expired)" in text.stdout
    produce(s, [("k", b"not a recommendation")], topic=s.dlq_topic)
    wrong = subprocess.run(RECO + ["--recommendations-topic", s.dlq_topic, "tail", "--from-beginning",
                                   "--timeout", "5"], env=env_for(s), capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "is not a recommendation" in wrong.stderr and "reco dlq" in wrong.stderr
    assert "Traceback" not in wrong.stderr
