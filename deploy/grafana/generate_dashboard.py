"""Generate deploy/grafana/dashboards/reco-engine.json, the engine's Grafana dashboard.

    python deploy/grafana/generate_dashboard.py          # rewrite the JSON
    python deploy/grafana/generate_dashboard.py --check  # exit 1 if the JSON is stale

The JSON is committed (Grafana provisions it from docker-compose.yml); tests check that it equals
this script's output and that every query names only metrics the engine exports (or recording
rules from deploy/prometheus/alerts.yml)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "reco-engine.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
SEL = '{instance=~"$instance"}'                           # every engine query honours $instance
RI = "[$__rate_interval]"


def sel(extra: str = "") -> str:
    return '{instance=~"$instance"' + (", " + extra if extra else "") + "}"


EXPLORE = sel('source="explore"')


def quantiles(metric: str, qs=(0.5, 0.95, 0.99)) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{SEL}{RI})))", f"p{round(q * 100)}")
            for q in qs]


# (title, unit, [(expr, legend)], description) grouped by row; "stat" panels are marked by unit prefix.
ROWS: list[tuple[str, list[dict]]] = [
    ("Throughput", [
        dict(title="Events consumed /s by type and outcome", unit="ops", targets=[
            (f"sum by (type, outcome) (rate(reco_events_consumed_total{SEL}{RI}))", "{{type}} {{outcome}}")],
            description="outcome: applied | invalid | duplicate"),
        dict(title="Recommendation lists published /s by variant", unit="ops", targets=[
            (f"sum by (variant) (rate(reco_recommendations_published_total{SEL}{RI}))", "{{variant}}")]),
        dict(title="Batch size (messages)", unit="short", targets=quantiles("reco_batch_size", (0.5, 0.95)) + [
            (f"sum(rate(reco_batch_size_sum{SEL}{RI})) / sum(rate(reco_batch_size_count{SEL}{RI}))", "mean")]),
    ]),
    ("Latency", [
        dict(title="Consume to publish", unit="s", targets=quantiles("reco_consume_to_publish_seconds"),
             description="The headline latency, true for live traffic and replays alike: from consuming a "
                         "batch to publishing its lists. Alert RecoPublishLatencyHigh: p95 > 5 s for 10 minutes"),
        dict(title="Event time to publish (live traffic only)", unit="s",
             targets=quantiles("reco_event_to_publish_seconds"),
             description="Freshness: from the event's own timestamp to the publish of the list it changed, "
                         "only for events within 300 s of the wall clock (replayed history is counted "
                         "in the next panel instead)"),
        dict(title="Lists for events outside the freshness range /s", unit="ops", targets=[
            (f"sum(rate(reco_event_to_publish_out_of_range_total{SEL}{RI}))", "out of range")],
            description="Historical replays or a skewed producer clock: ts more than 300 s from the wall clock"),
        dict(title="Batch processing and model update", unit="s", targets=[
            (f"histogram_quantile(0.95, sum by (le) (rate(reco_batch_processing_seconds_bucket{SEL}{RI})))",
             "batch p95"),
            (f"histogram_quantile(0.95, sum by (le) (rate(reco_model_update_seconds_bucket{SEL}{RI})))",
             "model update p95"),
            (f"sum(rate(reco_model_update_seconds_sum{SEL}{RI})) / sum(rate(reco_model_update_seconds_count{SEL}{RI}))",
             "model update mean")]),
        dict(title="Checkpoint duration", unit="s", targets=[
            (f"histogram_quantile(0.95, sum by (le) (rate(reco_checkpoint_seconds_bucket{SEL}{RI})))", "p95"),
            (f"sum(rate(reco_checkpoint_seconds_sum{SEL}{RI})) / sum(rate(reco_checkpoint_seconds_count{SEL}{RI}))",
             "mean")],
            description="One checkpoint a second: outputs flushed, state rows and offsets written. No batch is "
                        "processed meanwhile, so this is the tail of produce-to-list latency"),
    ]),
    ("Consumer lag", [
        dict(title="Lag (messages) per partition", unit="short", targets=[
            (f"sum by (topic, partition) (reco_consumer_lag_messages{SEL})", "{{topic}}/{{partition}}")]),
        dict(title="Lag (seconds, event time) per partition", unit="s", targets=[
            (f"max by (topic, partition) (reco_consumer_lag_seconds{SEL})", "{{topic}}/{{partition}}")],
            description="Alert RecoConsumerLagHigh: > 120 s for 5 minutes"),
        dict(title="Worst lag", unit="stat:s", targets=[(f"max(reco_consumer_lag_seconds{SEL})", "max lag")]),
    ]),
    ("Dead letters", [
        dict(title="DLQ writes /s by reason", unit="ops", targets=[
            (f"sum by (reason) (rate(reco_dlq_writes_total{SEL}{RI}))", "{{reason}}")]),
        dict(title="Dead-lettered share of consumed events", unit="percentunit", targets=[
            (f"sum(rate(reco_dlq_writes_total{SEL}{RI})) / sum(rate(reco_events_consumed_total{SEL}{RI}))", "DLQ share")],
            description="Alert RecoDeadLetterRateHigh: > 5% (and > 0.1/s) for 10 minutes"),
        dict(title="Offset resets and recreated topics (1 h)", unit="short", targets=[
            (f"sum by (topic) (increase(reco_offset_resets_total{SEL}[1h]))", "reset {{topic}}"),
            (f"sum by (topic) (increase(reco_topic_recreated_total{SEL}[1h]))", "recreated {{topic}}")],
            description="A recreated topic (new topic id) under stored state is read from its start, keeping the state"),
    ]),
    ("Live quality", [
        dict(title="Live HR@K per variant", unit="percentunit", targets=[
            (f"sum by (variant) (rate(reco_live_hits_total{SEL}[5m])) / sum by (variant) (rate(reco_live_targets_total{SEL}[5m]))",
             "{{variant}} (5m)"),
            ("reco:live_hit_rate:ratio_rate30m:avg_24h", "{{variant}} 24h level")],
            description="Hit rate of each next interaction in the user's last published list. "
                        "Alert RecoLiveHitRateDropped: 30m HR below 0.7 x its 24 h level for 30 minutes"),
        dict(title="Exploration share per variant", unit="percentunit", targets=[
            (f"sum by (variant) (rate(reco_recommended_items_total{EXPLORE}{RI}))"
             f" / sum by (variant) (rate(reco_recommended_items_total{SEL}{RI}))", "{{variant}}")]),
        dict(title="Catalogue coverage", unit="percentunit", targets=[
            (f"reco_catalog_coverage_ratio{SEL}", "{{instance}}")],
            description="Distinct items recommended / distinct items interacted with, per worker, over the last 10-20 minutes"),
    ]),
    ("State", [
        dict(title="Users in state per partition", unit="short", targets=[
            (f"sum by (partition) (reco_state_users{SEL})", "p{{partition}}")]),
        dict(title="State store size per partition", unit="bytes", targets=[
            (f"sum by (partition) (reco_state_bytes{SEL})", "p{{partition}}")]),
        dict(title="Restore progress", unit="short", targets=[
            (f"sum by (partition) (reco_restore_remaining_records{SEL})", "remaining p{{partition}}"),
            (f"sum(rate(reco_restored_records_total{SEL}{RI}))", "restored /s")]),
        dict(title="Changelog snapshots (1 h)", unit="stat:short", targets=[
            (f"sum(increase(reco_changelog_snapshots_total{SEL}[1h]))", "snapshots")]),
        dict(title="Users forgotten (1 h)", unit="stat:short", targets=[
            (f"sum(increase(reco_users_forgotten_total{SEL}[1h]))", "forgotten")]),
    ]),
    ("Workers and rebalances", [
        dict(title="Workers up / ready", unit="stat:short", targets=[
            ('sum(up{job="reco-engine", instance=~"$instance"})', "up"),
            (f"sum(reco_ready{SEL})", "ready")]),
        dict(title="Assigned partitions per worker", unit="short", targets=[
            (f"reco_assigned_partitions{SEL}", "{{instance}}")]),
        dict(title="Kernel warm-up at start (s)", unit="s", targets=[
            (f"reco_kernel_warm_up_seconds{SEL}", "{{instance}}")],
            description="Time to load (or, with a cold cache, compile) the engine's numba kernels before "
                        "joining the group; seconds rather than tenths means NUMBA_CACHE_DIR is not kept"),
        dict(title="Rebalances (per 5 minutes) by kind", unit="short", targets=[
            (f"sum by (kind) (increase(reco_rebalances_total{SEL}[5m]))", "{{kind}}")],
            description="Alert RecoRebalanceStorm: > 5 assignments on one worker within 15 minutes"),
        dict(title="Checkpoint and publish failures (1 h)", unit="short", targets=[
            (f"sum by (instance) (increase(reco_checkpoint_failures_total{SEL}[1h]))", "checkpoint {{instance}}"),
            (f"sum by (instance) (increase(reco_publish_failures_total{SEL}[1h]))", "publish {{instance}}")],
            description="Checkpoints abandoned because outputs were not delivered (the interval is replayed); "
                        "lists not published because ranking raised (an engine bug: see the log)"),
    ]),
]


def panel(pid: int, spec: dict, x: int, y: int, w: int) -> dict:
    unit = spec["unit"]
    kind = "timeseries"
    if unit.startswith("stat:"):
        kind, unit = "stat", unit[len("stat:"):]
    p = {
        "id": pid,
        "type": kind,
        "title": spec["title"],
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(spec["targets"])
        ],
    }
    if spec.get("description"):
        p["description"] = spec["description"]
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    return p


def dashboard() -> dict:
    panels, pid, y = [], 1, 0
    for row_title, specs in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        w = 24 // len(specs)
        for i, spec in enumerate(specs):
            panels.append(panel(pid, spec, i * w, y, w))
            pid += 1
        y += 8
    return {
        "uid": "reco-engine",
        "title": "Reco engine",
        "description": "Streaming recommendation engine: throughput, latency, lag, dead letters, live quality, state",
        "tags": ["reco", "kafka"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [{
            "name": "instance",
            "label": "Worker",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": 'label_values(up{job="reco-engine"}, instance)', "refId": "instance"},
            "definition": 'label_values(up{job="reco-engine"}, instance)',
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.is_file() or OUT.read_text() != text:
            sys.exit(f"{OUT} is stale: run python {Path(__file__).name}")
        sys.exit(0)
    OUT.write_text(text)
    print(f"wrote {OUT}")
