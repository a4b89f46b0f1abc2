"""A running worker (real embedded broker, real events) serves /metrics, /healthz and /readyz
over HTTP, and its /metrics exposes every series the dashboard and the alert rules query."""
from __future__ import annotations

import pytest
from deploy_support import alert_rules, dashboard_targets, grafana_expr_to_promql, promql_references, recording_rules
from helpers import event, http, latest_by_key, produce, read_all, wait_until
from prometheus_client.parser import text_string_to_metric_families

from streams.http import serve

# Series that only appear after rare events a short test cannot provoke honestly.
NEEDS_RARE_EVENT = {
    "reco_offset_resets_total": "a committed offset found out of range (retention deleted it)",
    "reco_topic_recreated_total": "a topic deleted and created again under a worker's stored state",
}
# Series the engine may not set yet: the test xfails while one of them is missing from /metrics
# and passes once they all appear (then delete the entry).
KNOWN_UNSET: dict[str, str] = {}


def _queried_series() -> set[str]:
    exprs = [grafana_expr_to_promql(e) for _, e in dashboard_targets()] + [r["expr"] for r in alert_rules()]
    names = {name for expr in exprs for name, _ in promql_references(expr)[0]}
    return names - recording_rules() - {"up"}


def _scraped_series(base: str) -> set[str]:
    status, text = http(base + "/metrics")
    assert status == 200
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_running_worker_exposes_every_queried_series(settings_factory, worker_factory):
    s = settings_factory(partitions=2)
    w = worker_factory(s)
    server = serve(w.metrics, w.worker.health, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert http(base + "/healthz")[0] == 200
        wait_until(lambda: w.value("reco_assigned_partitions") >= 2, what="partition assignment")
        wait_until(lambda: http(base + "/readyz")[0] == 200, what="/readyz 200")

        # Round 1 gives every user a published list; round 2 is then scored live (targets, hits).
        users = [f"user-{u}" for u in range(8)]
        first = [event(u, item, ts=1_700_000_000_000 + n) for u in users for n, item in enumerate("abc")]
        produce(s, [(e["user_id"], e) for e in first])
        wait_until(lambda: set(latest_by_key(read_all(s, s.recommendations_topic, idle_s=0.3))) >= set(users),
                   what="a list for every user")
        second = [event(u, "a", ts=1_700_000_100_000) for u in users]
        produce(s, [(e["user_id"], e) for e in second] + [(b"user-0", b"{not json")])
        wait_until(lambda: w.value("reco_live_targets_total") >= len(users), what="live targets")
        wait_until(lambda: w.value("reco_dlq_writes_total") >= 1, what="a dead letter")

        wanted = _queried_series() - set(NEEDS_RARE_EVENT) - set(KNOWN_UNSET)
        assert "reco_event_to_publish_seconds_bucket" in wanted and "reco_consumer_lag_seconds" in wanted

        def complete():
            return not (wanted - _scraped_series(base))

        try:
            wait_until(complete, timeout=30, interval=0.5, what="every queried series on /metrics")
        except AssertionError:
            raise AssertionError(f"not on /metrics: {sorted(wanted - _scraped_series(base))}") from None
        assert w.error is None
        still_unset = sorted(set(KNOWN_UNSET) - _scraped_series(base))
    finally:
        server.shutdown()
        server.server_close()
    del w, server  # the xfail traceback must not keep the worker's Kafka clients alive
    if still_unset:
        pytest.xfail(f"queried but never set by the engine: {still_unset}")
