"""docs/operations.md lists every metric in the catalogue and every alert with its threshold."""
from __future__ import annotations

import re

from deploy_support import OPERATIONS_DOC, alert_rules, catalogue_families, exported_series


def _catalogue_rows() -> dict[str, str]:
    rows = {}
    for line in OPERATIONS_DOC.read_text().splitlines():
        m = re.match(r"^\| `(reco_[a-z_]+)` \| (\w+) \|", line)
        if m:
            rows[m[1]] = m[2]
    return rows


def test_every_metric_has_one_catalogue_line_with_its_type():
    expected = {}
    for family, kind in catalogue_families().items():
        expected[f"{family}_total" if kind == "counter" else family] = kind
    assert _catalogue_rows() == expected


def test_documented_metric_names_are_exported():
    series = exported_series()
    for name in _catalogue_rows():
        assert name in series or f"{name}_bucket" in series, name


def test_every_alert_is_documented():
    lines = OPERATIONS_DOC.read_text().splitlines()
    for rule in alert_rules():
        (row,) = [line for line in lines if line.startswith(f"| `{rule['alert']}` |")]
        assert f"| {rule['for']} | {rule['labels']['severity']} |" in row, row


def test_documented_thresholds_are_the_rule_thresholds():
    text = OPERATIONS_DOC.read_text()
    rules = {r["alert"]: r["expr"] for r in alert_rules()}
    assert "> 120" in rules["RecoConsumerLagHigh"] and "**120 s**" in text
    assert "> 0.05" in rules["RecoDeadLetterRateHigh"] and "**5 %**" in text
    assert "> 0.1" in rules["RecoDeadLetterRateHigh"] and "**0.1/s**" in text
    assert "[15m])) > 5" in rules["RecoRebalanceStorm"] and "> **5** partition assignments" in text
    assert "reco:live_targets:rate30m > 0.05" in rules["RecoLiveHitRateDropped"] and "**0.05** targets/s" in text
    assert "vector(0.7)" in (OPERATIONS_DOC.parent.parent / "deploy/prometheus/alerts.yml").read_text()
    assert "**0.7**" in text
