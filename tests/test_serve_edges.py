"""`reco serve` where a new user meets its edges, as a real process over real HTTP: a busy port,
start-up output, a broker that lost its topics, a broker outage, topics with another partition
count, invalid ids, the write endpoints' token and rate."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka.admin import NewTopic
from helpers import produce, read_all, wait_until
from workers import spawn, stop

from streams.broker import EmbeddedBroker, free_port
from streams.clients import admin, ensure_topics


def spawn_serve(s, port: int, log: Path, **env) -> subprocess.Popen:
    return spawn(s, log=log, command="serve",
                 env={"RECO_SERVE_PORT": str(port), "RECO_SERVE_GROUP_ID": f"{s.group_id}-serve", **env})


def request(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def wait_serving(proc: subprocess.Popen, log: Path, port: int, timeout: float = 60) -> None:
    wait_until(lambda: proc.poll() is not None or f"serving on http://127.0.0.1:{port}" in log.read_text(),
               timeout=timeout, what="reco serve to say where it serves", interval=0.2)
    assert proc.poll() is None, log.read_text()


def test_busy_port_is_one_line(settings_factory, tmp_path):
    s = settings_factory()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = spawn_serve(s, port, tmp_path / "serve.log")
        assert proc.wait(30) == 1
    out = (tmp_path / "serve.log").read_text().strip().splitlines()
    assert out == [(f"Error: cannot serve on 127.0.0.1:{port}: Address already in use; choose another port "
                    "with --port / RECO_SERVE_PORT, or another address with RECO_SERVE_HOST")], out


def test_quiet_start_says_where_and_is_ready_then_a_lost_topic_is_one_line(settings_factory, tmp_path):
    s = settings_factory()
    ensure_topics(s)
    port, log = free_port(), tmp_path / "serve.log"
    proc = spawn_serve(s, port, log)
    try:
        wait_serving(proc, log, port)
        out = log.read_text()
        assert len(out.splitlines()) <= 5 and "+---" not in out and "[INFO]" not in out, out
        assert request(f"http://127.0.0.1:{port}/readyz") == (200, "ready\n")
        assert request(f"http://127.0.0.1:{port}/healthz")[0] == 200

        # The topic deleted and created again (what a restarted embedded broker amounts to):
        # the table mirrors a topic that is gone, so serve stops with one line.
        client = admin(s)
        client.delete_topics([s.recommendations_topic])[s.recommendations_topic].result()
        wait_until(lambda: s.recommendations_topic not in client.list_topics(timeout=5).topics, timeout=10)
        client.create_topics([NewTopic(s.recommendations_topic, 2, 1, config={"cleanup.policy": "compact"})])
        assert proc.wait(40) == 1
    finally:
        stop(proc)
    tail = log.read_text()[len(out):]
    assert "Traceback" not in tail and "crash" not in tail, tail
    errors = [line for line in tail.splitlines() if line.startswith("Error: ")]
    assert errors == [(f"Error: the broker at {s.bootstrap_servers} lost its topics ({s.recommendations_topic} "
                       "has a new topic id: it restarted without its data, or the topic was deleted); start "
                       "reco serve again")], tail


def test_outage_repeats_collapse_and_sigterm_still_stops(settings_factory, tmp_path):
    port = free_port()
    broker = EmbeddedBroker(port).start()
    s = settings_factory(bootstrap_servers=broker.bootstrap)
    serve_port, log = free_port(), tmp_path / "serve.log"
    proc = spawn_serve(s, serve_port, log, RECO_DELIVERY_TIMEOUT_S="2")
    try:
        wait_serving(proc, log, serve_port)
        before = len(log.read_text().splitlines())
        broker.stop()
        time.sleep(6)  # unpatched: ~100 ERROR lines a second
        # A forget that Kafka cannot take is not accepted (it was buffered, and lost on a stop).
        status, body = request(f"http://127.0.0.1:{serve_port}/users/u1/forget/", "POST")
        assert status == 503 and "could not be written" in body
        lines = log.read_text().splitlines()[before:]
        assert proc.poll() is None
        assert 0 < len(lines) <= 30, "\n".join(lines)
        # SIGTERM during the outage: faust's stop would wait for the broker for good.
        assert stop(proc, timeout=20) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()


def test_serving_adopts_the_topics_partition_count(settings_factory, tmp_path):
    """Topics with 4 partitions, RECO_PARTITIONS=2: every user with a list is served."""
    s = settings_factory(partitions=4)
    ensure_topics(s)
    users = [f"user-{n}" for n in range(40)]
    produce(s, [(u, {"user_id": u, "items": [{"item_id": "i1"}]}) for u in users], topic=s.recommendations_topic)
    port, log = free_port(), tmp_path / "serve.log"
    proc = spawn_serve(s, port, log, RECO_PARTITIONS="2")
    try:
        wait_serving(proc, log, port)

        def served(u):
            status, body = request(f"http://127.0.0.1:{port}/recommendations/{u}/")
            return status == 200 and orjson.loads(body)["user_id"] == u
        wait_until(lambda: all(served(u) for u in users), timeout=30, what="every user served", interval=0.5)
        assert request(f"http://127.0.0.1:{port}/readyz")[0] == 200
        assert "Traceback" not in log.read_text()
    finally:
        assert stop(proc) == 0


def test_a_table_changelog_of_another_partition_count_is_refused(settings_factory, tmp_path):
    s = settings_factory()
    ensure_topics(s)
    changelog = f"{s.group_id}-serve-served-recommendations-changelog"
    client = admin(s)
    client.create_topics([NewTopic(changelog, 3, 1)])[changelog].result()
    proc = spawn_serve(s, free_port(), tmp_path / "serve.log")
    assert proc.wait(30) == 1
    out = (tmp_path / "serve.log").read_text()
    assert f"Error: the serving table's changelog topic {changelog} has 3 partitions but " \
           f"{s.recommendations_topic} has 2: delete {changelog}" in out and "Traceback" not in out, out


def test_invalid_ids_token_and_rate(settings_factory, tmp_path):
    s = settings_factory()
    ensure_topics(s)
    port, log = free_port(), tmp_path / "serve.log"
    proc = spawn_serve(s, port, log, RECO_SERVE_TOKEN="t0ken-s3cret", RECO_SERVE_WRITE_RATE="3")
    base = f"http://127.0.0.1:{port}"
    good = {"Authorization": "Bearer t0ken-s3cret"}
    try:
        wait_serving(proc, log, port)
        long_id = "x" * 5000
        status, body = request(f"{base}/users/{long_id}/forget/", "POST", good)
        assert status == 400 and "invalid user id" in orjson.loads(body)["error"]
        assert request(f"{base}/recommendations/{long_id}/")[0] == 400

        # Without the token, with a wrong one, or another scheme: 401, and nothing is written.
        assert request(f"{base}/users/u1/forget/", "POST")[0] == 401
        assert request(f"{base}/users/u1/forget/", "POST", {"Authorization": "Bearer wrong"})[0] == 401
        assert request(f"{base}/users/u1/forget", "POST", {"Authorization": "Basic t0ken-s3cret"})[0] == 401
        time.sleep(1.1)  # the bucket full again after the 400 above
        assert request(f"{base}/users/u1/forget/", "POST", good)[0] == 202

        # A burst past the rate: 429.
        codes = [request(f"{base}/users/u{n}/forget/", "POST", good)[0] for n in range(10)]
        assert 429 in codes and codes.count(202) <= 4, codes
        assert "t0ken-s3cret" not in log.read_text()
    finally:
        assert stop(proc) == 0


def test_not_ready_while_an_agent_is_down():
    """What /readyz reports (the agents call failed/handled): a crashed agent that faust restarted
    at once is still down until it handles a record."""
    from streams.serve.health import ServeHealth

    health = ServeHealth()
    assert health.not_ready() == "starting"
    health.started = True
    assert health.not_ready() is None
    health.failed("serve_recommendations", KeyError("partition 3"))
    assert health.not_ready() == "agent serve_recommendations failed: KeyError: 'partition 3'"
    health.handled("apply_control")
    assert health.not_ready() is not None
    health.handled("serve_recommendations")
    assert health.not_ready() is None


def test_a_forget_waits_for_a_missing_interactions_topic_not_ready_meanwhile(settings_factory, tmp_path):
    s = settings_factory()
    ensure_topics(s)
    port, log = free_port(), tmp_path / "serve.log"
    proc = spawn_serve(s, port, log)
    base = f"http://127.0.0.1:{port}"
    client = admin(s)
    try:
        wait_serving(proc, log, port)
        client.delete_topics([s.interactions_topic])[s.interactions_topic].result()
        wait_until(lambda: s.interactions_topic not in client.list_topics(timeout=5).topics, timeout=10)
        assert request(f"{base}/users/u7/forget/", "POST")[0] == 202
        wait_until(lambda: request(f"{base}/readyz")[0] == 503, timeout=20, what="not ready", interval=0.3)
        assert "forget requests wait" in request(f"{base}/readyz")[1]
        assert s.interactions_topic not in client.list_topics(timeout=5).topics  # not auto-created by serve

        client.create_topics([NewTopic(s.interactions_topic, 2, 1)])[s.interactions_topic].result()
        wait_until(lambda: request(f"{base}/readyz")[0] == 200, timeout=30, what="ready again", interval=0.3)
        markers = read_all(s, s.interactions_topic)
        assert sorted(m.partition() for m in markers if m.key() == b"u7") == [0, 1]
    finally:
        assert stop(proc) == 0
