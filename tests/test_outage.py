"""The broker goes away mid-run and comes back empty (the embedded broker keeps nothing): the
worker must not crash, must report not-ready meanwhile, and must resume by itself, applying the
recreated-topic policy (topic ids changed: keep state, read the new input from its start, re-seed
the new changelog) with a warning and metrics."""
from __future__ import annotations

import signal
import subprocess
import sys

import orjson
from helpers import event, http, latest_by_key, produce, read_all, wait_until
from test_recovery import make_settings
from workers import worker_env

from streams.broker import EmbeddedBroker, free_port
from streams.cli.state_dump import dump_state
from streams.clients import ensure_topics


def test_broker_outage_worker_survives_and_resumes(tmp_path):
    port, metrics_port = free_port(), free_port()
    broker = EmbeddedBroker(port).start()
    s = make_settings(broker, tmp_path)
    ensure_topics(s)
    env = {**worker_env(s), "RECO_METRICS_PORT": str(metrics_port), "RECO_DELIVERY_TIMEOUT_S": "5"}
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "run"], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        wait_until(lambda: http(f"{base}/readyz")[0] == 200, what="ready")
        before = [event(f"u{n % 50}", f"i{n % 30}", ts=1_700_000_000_000 + n) for n in range(2000)]
        produce(s, [(e["user_id"], e) for e in before])
        wait_until(lambda: 'reco_events_consumed_total{outcome="applied",type="click"} 2000.0'
                   in http(f"{base}/metrics")[1], what="first load applied")

        broker.stop()                                       # outage
        wait_until(lambda: http(f"{base}/readyz")[0] == 503, timeout=60, what="not ready during the outage")
        assert http(f"{base}/healthz")[0] == 200, "alive while the broker is gone"
        assert proc.poll() is None

        broker = EmbeddedBroker(port).start()               # back, but empty
        ensure_topics(s)
        after = [event(f"new{n % 20}", f"i{n % 30}", ts=1_700_000_100_000 + n) for n in range(300)]
        produce(s, [(e["user_id"], e) for e in after])
        wait_until(lambda: http(f"{base}/readyz")[0] == 200, timeout=60, what="ready again by itself")
        view = wait_until(lambda: (v := latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3)))
                          and len(v) == 20 and v, timeout=60, what="lists for the events after the outage")
        assert set(view) == {f"new{n}" for n in range(20)}
        metrics = http(f"{base}/metrics")[1]
        assert 'reco_offset_resets_total{topic="%s"}' % s.interactions_topic in metrics
        for topic in (s.interactions_topic, s.changelog_topic):
            assert 'reco_topic_recreated_total{topic="%s"}' % topic in metrics
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        broker.stop()
    assert proc.returncode == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "was recreated (its id changed)" in text and "re-seeding it from the local store" in text
    users = orjson.loads(dump_state(s.state_dir, s.interactions_topic))["users"]
    assert sum(sum(u["counts"].values()) for u in users.values()) == 2300, "each event applied exactly once"
