"""`reco serve` (faust-streaming) against a real worker and broker: the serving table answers
over real HTTP, and a forget-user request reaches every store — the worker's RocksDB and its
changelog, the recommendations topic and the serving table."""
from __future__ import annotations

import json
import subprocess

import orjson
from confluent_kafka.admin import ConfigResource
from helpers import event, http, latest_by_key, produce, read_all, wait_until
from workers import spawn, stop, wait_caught_up

from online_models.state.store import user_key
from streams.broker import free_port
from streams.cli.state_dump import dump_state
from streams.clients import admin, ensure_topics


def spawn_serve(s, port: int, log) -> subprocess.Popen:
    return spawn(s, log=log, command="serve",
                 env={"RECO_SERVE_PORT": str(port), "RECO_SERVE_GROUP_ID": f"{s.group_id}-serve"})


def test_serving_and_forgetting_a_user_everywhere(settings_factory, tmp_path):
    s = settings_factory()
    users = [f"u{n}" for n in range(12)]
    events = [event(u, f"i{(n * 7 + i) % 15}", ts=1_700_000_000_000 + 1000 * i)
              for n, u in enumerate(users) for i in range(5)]
    ensure_topics(s)
    port = free_port()
    worker = spawn(s, log=tmp_path / "worker.log")
    serve = spawn_serve(s, port, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        ends = produce(s, [(e["user_id"], e) for e in events])
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[worker])
        published = latest_by_key(read_all(s, s.recommendations_topic))
        assert set(published) == set(users)

        # Serving: each user's list over HTTP is their latest value on the topic.
        def served(user):
            status, body = http(f"{base}/recommendations/{user}/")
            return status == 200 and orjson.loads(body) == published[user]
        wait_until(lambda: all(served(u) for u in users), timeout=90, what="serve app to answer every user",
                   interval=0.5)
        assert http(f"{base}/recommendations/nobody/")[0] == 404
        # Every compacted topic that holds user ids bounds how long an old record survives.
        client = admin(s)
        for topic in (s.recommendations_topic, s.changelog_topic, f"{s.group_id}-serve-served-recommendations-changelog"):
            resource = ConfigResource("topic", topic)
            entries = client.describe_configs([resource], request_timeout=10)[resource].result(10)
            assert entries["max.compaction.lag.ms"].value == str(s.compaction_max_lag_ms), topic
            assert entries["segment.ms"].value == str(s.segment_ms), topic
        for topic in (s.interactions_topic, s.dlq_topic, s.control_topic):  # raw records naming users
            resource = ConfigResource("topic", topic)
            entries = client.describe_configs([resource], request_timeout=10)[resource].result(10)
            assert entries["retention.ms"].value == str(s.raw_retention_ms), topic
        status, body = http(f"{base}/recommendations/{users[0]}")  # no trailing slash: same answer
        assert status == 200 and orjson.loads(body) == published[users[0]]

        # Forget u3: HTTP request → control topic → markers → worker → tombstones → table.
        status, body = http(f"{base}/users/u3/forget", "POST")
        assert status == 202 and json.loads(body)["status"] == "accepted"
        wait_until(lambda: http(f"{base}/recommendations/u3/")[0] == 404, timeout=60,
                   what="u3 gone from the serving table", interval=0.5)
        assert served("u4")  # the others are untouched

        msgs = read_all(s, s.recommendations_topic)
        assert "u3" not in latest_by_key(msgs)
        assert msgs[-1].value() is None or any(m.key() == b"u3" and m.value() is None for m in msgs)
        changelog = read_all(s, s.changelog_topic)
        key = user_key("u3")
        assert any(m.key() == key and m.value() is None for m in changelog), "no changelog tombstone"
        wait_until(lambda: "u3" not in orjson.loads(dump_state(s.state_dir, s.interactions_topic))["users"],
                   timeout=30, what="u3 gone from RocksDB")
        assert "u4" in orjson.loads(dump_state(s.state_dir, s.interactions_topic))["users"]

        # A later event starts u3 afresh: nothing of the old history comes back.
        ends = produce(s, [("u3", event("u3", "i1", ts=1_700_000_100_000))])
        wait_caught_up([s.state_dir], s.interactions_topic, ends, procs=[worker])
        state = orjson.loads(dump_state(s.state_dir, s.interactions_topic))["users"]["u3"]
        assert state["counts"] == {"click": 1}

        # A malformed control request goes to the DLQ, the serve app keeps going.
        produce(s, [(b"u5", b"{not json")], topic=s.control_topic)
        wait_until(lambda: any(m.headers() and dict(m.headers()).get("dlq.source.topic") == s.control_topic.encode()
                               for m in read_all(s, s.dlq_topic, idle_s=0.3)), timeout=30,
                   what="bad control request in the DLQ")
        assert serve.poll() is None and served("u4")
    finally:
        codes = stop(serve), stop(worker)
    assert codes == (0, 0), "serve app and worker stop cleanly on SIGTERM"


def test_kafka_security_settings_reach_the_faust_app():
    """The serve app connects with the same RECO_* security settings as the workers: what
    aiokafka is handed for each protocol."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.serve.app import _broker_credentials
    from streams.settings import Settings

    def auth(**kw):
        return credentials_to_aiokafka_auth(_broker_credentials(Settings(**kw)))

    assert auth() == {"security_protocol": "PLAINTEXT"}
    tls = auth(security_protocol="SSL")
    assert tls["security_protocol"] == "SSL" and tls["ssl_context"] is not None
    sasl = auth(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                sasl_username="reco", sasl_password="s3cret")
    assert sasl["security_protocol"] == "SASL_SSL" and sasl["ssl_context"] is not None
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == \
        ("SCRAM-SHA-512", "reco", "s3cret")
    plain = auth(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    assert plain["security_protocol"] == "SASL_PLAINTEXT" and plain["ssl_context"] is None
