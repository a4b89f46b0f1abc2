"""Helpers shared by tests/test_deploy_*.py: the repo's deploy files, the metric catalogue as the
engine exports it, PromQL metric/label extraction, and promtool discovery."""
from __future__ import annotations

import json
import os
import re
import shutil
from functools import cache
from pathlib import Path

import promql_parser
import pytest
import yaml

from streams.metrics import Metrics
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "reco-engine.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

# Labels Prometheus attaches at scrape time, on every engine series.
TARGET_LABELS = frozenset({"job", "instance"})
ENGINE_JOB = "reco-engine"

# Grafana variables, replaced by something PromQL accepts before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a fresh Metrics() can expose, mapped to its label names (scrape-time
    target labels and histogram `le` included). Counters expose <name>_total, histograms
    <name>_bucket/_sum/_count; both also <name>_created."""
    metrics = Metrics()
    labels_by_family: dict[str, tuple[str, ...]] = {}
    for attr in vars(metrics).values():
        name = getattr(attr, "_name", None)
        if name is not None:
            labels_by_family[name] = tuple(getattr(attr, "_labelnames", ()))
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        base = set(labels_by_family[family.name]) | TARGET_LABELS
        if family.type == "counter":
            names = {f"{family.name}_total": base, f"{family.name}_created": base}
        elif family.type == "histogram":
            names = {f"{family.name}_bucket": base | {"le"}, f"{family.name}_sum": base,
                     f"{family.name}_count": base, f"{family.name}_created": base}
        elif family.type == "gauge":
            names = {family.name: base}
        else:  # pragma: no cover - the catalogue has no other types today
            names = {family.name: base}
        series.update({k: frozenset(v) for k, v in names.items()})
    return series


def catalogue_families() -> dict[str, str]:
    """Family name -> type for every metric in streams/metrics.py."""
    return {f.name: f.type for f in Metrics().registry.collect()}


@cache
def recording_rules() -> frozenset[str]:
    return frozenset(r["record"] for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "record" in r)


def alert_rules() -> list[dict]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def grafana_expr_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable left in {expr!r}"
    return expr


def promql_references(expr: str) -> tuple[list[tuple[str, frozenset[str]]], set[str]]:
    """Parse PromQL; return ([(metric name, label names matched on it)], grouping labels used in
    by/without/on/ignoring/group_left/group_right clauses). Raises ValueError on a syntax error."""
    tree = promql_parser.parse(expr)
    selectors: list[tuple[str, frozenset[str]]] = []
    grouping: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            if node.name is None:
                raise ValueError(f"selector without a metric name in {expr!r}")
            names = {m.name for m in node.matchers.matchers} - {"__name__"}
            selectors.append((node.name, frozenset(names)))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                grouping.update(node.modifier.matching.labels)
            grouping.update(node.modifier.group_labels or ())
        return True

    promql_parser.walk(tree, visit)
    return selectors, grouping


def unknown_references(expr: str, allow_recording_rules: bool = True) -> list[str]:
    """Problems with the metric and label names an expression uses; [] when all exist."""
    problems = []
    series = exported_series()
    selectors, grouping = promql_references(expr)
    known_labels = set(TARGET_LABELS)
    for name, matched in selectors:
        if name == "up":
            labels = TARGET_LABELS
        elif allow_recording_rules and name in recording_rules():
            labels = None  # labels come from the rule's own aggregation
        elif name in series:
            labels = series[name]
        else:
            problems.append(f"metric {name!r} is not exported by streams.metrics.Metrics")
            continue
        if labels is not None:
            known_labels |= labels
            for label in matched - labels:
                problems.append(f"{name} has no label {label!r}")
        else:
            known_labels.add("variant")
    for label in grouping - known_labels:
        problems.append(f"grouping label {label!r} is on none of the metrics used")
    return problems


def settings_env_names() -> set[str]:
    """RECO_* environment variable names Settings reads (env_prefix + upper-cased field)."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {prefix + name.upper() for name in Settings.model_fields}


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings as a process with exactly these RECO_* variables would build them."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("RECO_")}
    try:
        for k in saved:
            del os.environ[k]
        os.environ.update({k: str(v) for k, v in env.items() if k.startswith("RECO_")})
        return Settings()
    finally:
        for k in [k for k in os.environ if k.startswith("RECO_")]:
            del os.environ[k]
        os.environ.update(saved)


def image_is_pinned(image: str) -> bool:
    """name:tag (not latest) or name@sha256:digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def promtool() -> str:
    """Path of promtool; fails under CI (CI must install it: apt-get install prometheus),
    skips on a developer machine without it."""
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("promtool not found: CI must install Debian's prometheus package")
    pytest.skip("promtool not installed (apt-get install prometheus)")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard()["panels"])
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


def template_selectors() -> list[tuple[str, str]]:
    """(selector, label) of every label_values() template variable query."""
    out = []
    for var in dashboard().get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = _LABEL_VALUES.match(query or "")
        assert m, f"template variable {var.get('name')} has a query this test cannot read: {query!r}"
        out.append((m["selector"], m["label"]))
    return out
