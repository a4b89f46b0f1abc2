"""deploy/grafana: the dashboard is what the generator makes, every query names metrics (and
labels) the engine exports, and the provisioning files fit the compose mounts."""
from __future__ import annotations

import importlib.util
from urllib.parse import urlparse

import pytest
from deploy_support import (COMPOSE, DASHBOARD, DEPLOY, GRAFANA_PROVISIONING, catalogue_families, dashboard,
                            dashboard_targets, grafana_expr_to_promql, load_yaml, template_selectors,
                            unknown_references)

# Catalogue metrics deliberately left off the dashboard (none today): add with a reason.
NOT_ON_DASHBOARD: dict[str, str] = {}


def _generator():
    spec = importlib.util.spec_from_file_location("generate_dashboard", DEPLOY / "grafana" / "generate_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_json_is_generated_output():
    assert DASHBOARD.read_text() == _generator().render(), \
        "stale dashboard: run python deploy/grafana/generate_dashboard.py"


@pytest.mark.parametrize("title,expr", dashboard_targets(), ids=lambda v: v if len(v) < 60 else None)
def test_panel_query_names_exported_metrics(title, expr):
    assert unknown_references(grafana_expr_to_promql(expr)) == [], title


def test_template_variables_name_exported_metrics():
    selectors = template_selectors()
    assert selectors
    for selector, label in selectors:
        assert unknown_references(grafana_expr_to_promql(selector)) == []
        assert label in {"instance", "job"}


def test_query_checker_is_not_vacuous():
    assert unknown_references(grafana_expr_to_promql('rate(reco_events_consumed{instance=~"$instance"}[$__rate_interval])'))
    assert unknown_references("histogram_quantile(0.9, sum by (le) (rate(reco_event_to_publish_bucket[5m])))")
    with pytest.raises(ValueError):
        unknown_references("sum(rate(reco_dlq_writes_total[5m])")


def test_every_catalogue_metric_is_on_the_dashboard():
    used = " ".join(expr for _, expr in dashboard_targets())
    missing = [name for name in catalogue_families() if name not in used and name not in NOT_ON_DASHBOARD]
    assert missing == []


def test_dashboard_covers_the_required_views():
    exprs = [expr for _, expr in dashboard_targets()]
    joined = " ".join(exprs)
    for needle in ("histogram_quantile(0.95", "reco_consumer_lag_messages", "reco_consumer_lag_seconds",
                   "reco_dlq_writes_total", 'source="explore"', "reco_catalog_coverage_ratio",
                   "reco_state_bytes", "reco_rebalances_total", "reco_restore_remaining_records"):
        assert needle in joined, needle
    hr = [e for e in exprs if "reco_live_hits_total" in e]
    assert hr and all("by (variant)" in e and "reco_live_targets_total" in e for e in hr)


def test_panels_use_the_provisioned_datasource_and_unique_ids():
    uids = {d["uid"] for d in load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]}
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p["id"])
            if p["type"] != "row":
                assert p["datasource"]["uid"] in uids, p["title"]
                assert p["targets"], p["title"]
                for t in p["targets"]:
                    assert t["datasource"]["uid"] in uids
            walk(p.get("panels", []))

    walk(dashboard()["panels"])
    assert len(ids) == len(set(ids))


def test_datasource_points_at_the_compose_prometheus():
    compose = load_yaml(COMPOSE)
    (ds,) = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    url = urlparse(ds["url"])
    assert url.hostname in compose["services"]
    published = {p.split(":")[-1] for p in compose["services"][url.hostname]["ports"]}
    assert str(url.port) in published


def test_compose_mounts_provisioning_and_the_dashboard_folder():
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = {}
    for v in grafana["volumes"]:
        source, target = v.split(":")[:2]
        mounts[target] = source
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    (provider,) = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "reco.yml")["providers"]
    dash_dir = provider["options"]["path"]
    assert mounts[dash_dir] == "./" + str(DASHBOARD.parent.relative_to(DEPLOY.parent))
