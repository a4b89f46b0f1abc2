"""docker-compose.yml and the Dockerfile: valid against the Compose specification, and every
image, port, env var, volume and topic matches what the code reads."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import tomllib
from deploy_support import COMPOSE, DOCKERFILE, ROOT, image_is_pinned, load_yaml, settings_env_names, settings_from_env

from streams.clients import topic_specs

SCHEMA = Path(__file__).parent / "data" / "compose-spec" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def workers(compose) -> dict[str, dict]:
    """Services built from the Dockerfile running the engine."""
    found = {name: svc for name, svc in compose["services"].items() if "build" in svc}
    assert len(found) >= 2, "N >= 2 engine workers"
    return found


def _validator():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_compose_file_matches_the_compose_specification(compose):
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in _validator().iter_errors(compose)]
    assert errors == []


def test_schema_rejects_a_misspelt_key(compose):
    bad = json.loads(json.dumps(compose))
    bad["services"]["engine-1"]["enviroment"] = {"RECO_K": "10"}
    assert list(_validator().iter_errors(bad))


def test_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        assert "image" in svc, name
        assert image_is_pinned(svc["image"]), f"{name}: {svc['image']}"
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)[1]
    assert image_is_pinned(base) and base.startswith("python:3.11"), base


def test_image_pin_check_is_strict():
    assert not image_is_pinned("apache/kafka:latest")
    assert not image_is_pinned("apache/kafka")
    assert not image_is_pinned("localhost:5000/kafka")
    assert image_is_pinned("localhost:5000/kafka:3.9.0")


def test_worker_env_vars_are_settings(workers):
    known = settings_env_names()
    for name, svc in workers.items():
        env = svc["environment"]
        assert isinstance(env, dict), "use the mapping form so keys can be checked"
        unknown = {k for k in env if k.startswith("RECO_")} - known
        assert unknown == set(), f"{name}: {unknown}"
        assert set(env) == {k for k in env if k.startswith("RECO_")}, "only RECO_* settings"
        settings_from_env(env)  # the values parse, too


def test_env_var_check_would_catch_a_typo():
    assert "RECO_BOOTSTRAP_SERVER" not in settings_env_names()
    assert "RECO_BOOTSTRAP_SERVERS" in settings_env_names()


def test_workers_reach_kafka_on_its_internal_listener(compose, workers):
    kafka_env = compose["services"]["kafka"]["environment"]
    advertised = dict(l.split("://") for l in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    internal = kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    for svc in workers.values():
        assert settings_from_env(svc["environment"]).bootstrap_servers == advertised[internal] == "kafka:9092"
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_kafka_runs_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["CLUSTER_ID"]
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(v.split(":")[1] == data_dir for v in kafka["volumes"])


def test_state_volume_is_mounted_at_the_state_dir(workers):
    sources = []
    for name, svc in workers.items():
        state_dir = str(settings_from_env(svc["environment"]).state_dir)
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert state_dir in mounts, f"{name}: no volume at {state_dir}"
        sources.append(mounts[state_dir])
    assert len(sources) == len(set(sources)), "each worker needs its own state volume"


def test_metrics_port_is_the_configured_one(workers):
    for name, svc in workers.items():
        port = settings_from_env(svc["environment"]).metrics_port
        assert port == 9100
        container_ports = {int(p.split(":")[-1]) for p in svc.get("ports", [])}
        assert container_ports == {port}, name


def _topic_commands(compose) -> dict[str, dict]:
    script = " ".join(compose["services"]["topics"]["command"])
    created = {}
    for line in script.splitlines():
        if "kafka-topics.sh" not in line or "--create" not in line:
            continue
        args = shlex.split(line)
        opts = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
        configs = dict(c.split("=", 1) for a, c in zip(args, args[1:]) if a == "--config")
        created[opts["--topic"]] = {"partitions": int(opts["--partitions"]), "configs": configs,
                                    "replication": int(opts["--replication-factor"]),
                                    "bootstrap": opts["--bootstrap-server"]}
    return created


def test_topics_service_creates_every_engine_topic_as_the_engine_would(compose, workers):
    created = _topic_commands(compose)
    for svc in workers.values():
        settings = settings_from_env(svc["environment"])
        specs = topic_specs(settings)
        assert set(created) == set(specs)
        for topic, config in specs.items():
            assert created[topic]["configs"] == config, topic
            assert created[topic]["partitions"] == settings.partitions, topic
            assert created[topic]["replication"] == settings.replication_factor, topic
            assert created[topic]["bootstrap"] == settings.bootstrap_servers, topic


def test_compose_interpolation_is_not_triggered(compose):
    """Compose would substitute $VAR in values; the file uses none (so nothing is silently empty)."""
    assert not re.search(r"(?<!\$)\$(?!\$)", COMPOSE.read_text())


def test_mounted_files_exist(compose):
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_prometheus_mounts_config_and_rules_side_by_side(compose):
    prom = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    config_target = "/etc/prometheus/prometheus.yml"
    assert mounts[config_target] == "./deploy/prometheus/prometheus.yml"
    assert f"--config.file={config_target}" in prom["command"]
    rule_files = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")["rule_files"]
    for rule_file in rule_files:
        target = str(Path(config_target).parent / rule_file)
        assert mounts.get(target) == "./deploy/prometheus/" + rule_file


# -- Dockerfile ---------------------------------------------------------------------------------
def _dockerfile_instruction(name: str) -> list[str]:
    m = re.search(rf"^{name}\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.M)
    assert m, f"{name} must use the exec (JSON) form"
    return json.loads(m[1])


def test_dockerfile_runs_the_console_script():
    from streams.cli.main import cli

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint, cmd = _dockerfile_instruction("ENTRYPOINT"), _dockerfile_instruction("CMD")
    assert entrypoint[0] in scripts and scripts[entrypoint[0]] == "streams.cli.main:main"
    assert cmd == ["run"] and "run" in cli.commands


def test_dockerfile_installs_the_package_as_non_root():
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN pip install \.", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")


def test_dockerfile_copies_what_exists_and_is_not_ignored():
    ignored = {line.strip().lstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for line in re.findall(r"^COPY\s+(.+)$", DOCKERFILE.read_text(), re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source not in ignored, f"{source} is excluded by .dockerignore"


def test_dockerfile_defaults_match_compose(workers):
    text = DOCKERFILE.read_text()
    for svc in workers.values():
        settings = settings_from_env(svc["environment"])
        assert f"RECO_STATE_DIR={settings.state_dir}" in text
        assert f"RECO_METRICS_PORT={settings.metrics_port}" in text
        assert re.search(rf"^EXPOSE\s+{settings.metrics_port}\b", text, re.M)
        assert re.search(rf'^VOLUME\s+\["{re.escape(str(settings.state_dir))}"\]', text, re.M)


def test_serve_service_runs_the_serving_app_as_configured(compose):
    from streams.cli.main import cli

    svc = compose["services"]["serve"]
    assert svc["command"] == ["serve"] and "serve" in cli.commands
    assert svc["image"] == compose["services"]["engine-1"]["image"]
    env = svc["environment"]
    assert {k for k in env} <= settings_env_names()
    settings = settings_from_env(env)
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.serve_advertised_host == "serve"
    engine = settings_from_env(compose["services"]["engine-1"]["environment"])
    assert settings.partitions == engine.partitions, "the serving table is partitioned like the topic"
    assert {int(p.split(":")[-1]) for p in svc["ports"]} == {settings.serve_port}
