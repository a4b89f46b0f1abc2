"""deploy/prometheus: promtool accepts the config and rules, the rule unit tests pass, every
alert is unit-tested, and every rule names only metrics the engine exports."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from deploy_support import (ALERTS, ALERTS_TEST, COMPOSE, ENGINE_JOB, PROMETHEUS_CONFIG, alert_rules,
                            load_yaml, promtool, recording_rules, unknown_references)

REQUIRED_ALERTS = {
    "RecoConsumerLagHigh", "RecoDeadLetterRateHigh", "RecoNoRecommendationsPublished",
    "RecoRebalanceStorm", "RecoLiveHitRateDropped", "RecoWorkerDown", "RecoWorkersAbsent",
}


def run_promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_config():
    result = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr  # the config really loads alerts.yml


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    n_rules = sum(len(g["rules"]) for g in load_yaml(ALERTS)["groups"])
    assert f"{n_rules} rules found" in result.stdout


def test_promtool_test_rules():
    result = run_promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_catches_a_broken_threshold(tmp_path):
    """The unit tests are not vacuous: loosening the lag threshold makes them fail."""
    promtool()
    text = ALERTS.read_text()
    assert "(reco_consumer_lag_seconds) > 120" in text
    (tmp_path / ALERTS.name).write_text(text.replace("(reco_consumer_lag_seconds) > 120",
                                                     "(reco_consumer_lag_seconds) > 1000"))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run_promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "RecoConsumerLagHigh" in result.stdout + result.stderr


def test_required_alerts_exist():
    names = {r["alert"] for r in alert_rules()}
    assert REQUIRED_ALERTS <= names, REQUIRED_ALERTS - names


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    firing, quiet = set(), set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - firing == set(), f"alerts never tested firing: {names - firing}"
    assert names - quiet == set(), f"alerts never tested quiet: {names - quiet}"


def test_alerts_test_loads_the_rules_file():
    assert load_yaml(ALERTS_TEST)["rule_files"] == [ALERTS.name]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_is_well_formed(rule):
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "for" in rule, "every alert waits before firing (no paging on a single scrape)"


def _all_rules():
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]


@pytest.mark.parametrize("rule", _all_rules(), ids=lambda r: r.get("alert") or r.get("record"))
def test_rule_names_only_exported_metrics(rule):
    assert unknown_references(rule["expr"]) == []


def test_rule_checker_rejects_unknown_metrics():
    assert unknown_references("rate(reco_events_consumed_totl[5m]) > 0")
    assert unknown_references('reco_dlq_writes_total{variant="a"}')  # dlq has no variant label
    assert unknown_references("sum by (user_id) (rate(reco_live_hits_total[5m]))")


def test_recording_rules_follow_naming_convention():
    assert recording_rules(), "the HR alert relies on recording rules"
    for name in recording_rules():
        level, metric, operations = name.split(":", 2)  # level:metric:operations
        assert level == "reco" and metric and operations, name


def test_alerts_about_workers_match_the_scrape_job():
    jobs = {c["job_name"] for c in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    assert ENGINE_JOB in jobs
    for rule in alert_rules():
        if "up{" in rule["expr"]:
            assert f'job="{ENGINE_JOB}"' in rule["expr"], rule["alert"]


def test_scrape_targets_are_the_compose_workers_on_the_metrics_port():
    from deploy_support import settings_from_env

    compose = load_yaml(COMPOSE)
    job = next(c for c in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if c["job_name"] == ENGINE_JOB)
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = {name: svc for name, svc in compose["services"].items()   # `reco run` (the image's CMD)
               if svc.get("environment", {}).get("RECO_BOOTSTRAP_SERVERS") and svc.get("command", ["run"]) == ["run"]}
    assert workers, "no engine workers in docker-compose.yml"
    expected = {f"{name}:{settings_from_env(svc['environment']).metrics_port}" for name, svc in workers.items()}
    assert targets == expected
