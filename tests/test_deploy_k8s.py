"""deploy/k8s: the manifests validate against the Kubernetes API schemas (kubernetes-validate,
strict) and agree with the code: RECO_* keys, metrics port, probes, state volume, image pin."""
from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from deploy_support import K8S, image_is_pinned, load_yaml_all, settings_env_names, settings_from_env

VERSION = kubernetes_validate.latest_version()


def _documents() -> list[tuple[str, dict]]:
    docs = [(f"{p.name}:{d['kind']}", d) for p in sorted(K8S.glob("*.yaml")) for d in load_yaml_all(p)]
    assert docs
    return docs


def _one(kind: str, name: str | None = None) -> dict:
    (doc,) = [d for _, d in _documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


@pytest.fixture(scope="module")
def statefulset() -> dict:
    return _one("StatefulSet")


@pytest.fixture(scope="module")
def container(statefulset) -> dict:
    (c,) = statefulset["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def settings():
    env = dict(_one("ConfigMap")["data"])
    env.update(_one("Secret")["stringData"])
    return settings_from_env(env)


@pytest.mark.parametrize("name,doc", _documents(), ids=[n for n, _ in _documents()])
def test_manifest_validates(name, doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_validation_is_strict(statefulset):
    bad = copy.deepcopy(statefulset)
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbee"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSION, strict=True)


def test_config_keys_are_settings():
    known = settings_env_names()
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        keys = set(_one(kind)[field])
        assert keys and keys <= known, f"{kind}: {keys - known}"


def test_password_only_in_the_secret():
    assert "RECO_SASL_PASSWORD" in _one("Secret")["stringData"]
    assert not any("PASSWORD" in k for k in _one("ConfigMap")["data"])


def test_env_comes_from_the_configmap_and_secret(container):
    refs = container["envFrom"]
    assert {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"]}} in refs
    assert {"secretRef": {"name": _one("Secret")["metadata"]["name"]}} in refs
    for env in container.get("env", []):
        assert env["name"] in settings_env_names()


def test_state_volume_is_a_claim_template_mounted_at_the_state_dir(statefulset, container, settings):
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get(str(settings.state_dir)) in claims


def test_metrics_port_probes_and_service(container, settings):
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in (*probes.values(), container["startupProbe"]["httpGet"]):
        assert probe["port"] in ("metrics", settings.metrics_port)
    service = _one("Service", "reco-engine")
    assert service["spec"]["clusterIP"] == "None"
    (sp,) = service["spec"]["ports"]
    assert sp["port"] == settings.metrics_port and sp["targetPort"] in ("metrics", settings.metrics_port)


def test_probe_paths_are_served_by_the_worker(settings):
    """The paths the probes hit answer (200 or 503, not 404) on the engine's HTTP app."""
    from streams.http import Health, make_app
    from streams.metrics import Metrics

    metrics = Metrics()
    app = make_app(metrics, Health(metrics))
    for path, expected in (("/healthz", "200"), ("/readyz", "503"), ("/metrics", "200"), ("/nope", "404")):
        status = []
        app({"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": None}, lambda s, h: status.append(s))
        assert status[0].startswith(expected), (path, status)


def test_statefulset_wiring(statefulset, container):
    spec = statefulset["spec"]
    assert spec["serviceName"] == _one("Service", "reco-engine")["metadata"]["name"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    assert selector.items() <= _one("Service", "reco-engine")["spec"]["selector"].items()
    assert selector == _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])


def test_container_image_command_and_resources(container):
    assert image_is_pinned(container["image"])
    assert container["args"] == ["run"] and "command" not in container  # ENTRYPOINT is `reco`
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_runs_as_the_image_user(statefulset):
    sec = statefulset["spec"]["template"]["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True
    from deploy_support import DOCKERFILE
    assert f"USER {sec['runAsUser']}" in DOCKERFILE.read_text()


def test_serve_deployment_wiring(settings):
    deployment = _one("Deployment", "reco-serve")
    spec = deployment["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["args"] == ["serve"] and image_is_pinned(c["image"])
    env = {e["name"]: e for e in c["env"]}
    assert set(env) <= settings_env_names()
    assert env["RECO_SERVE_ADVERTISED_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    serve = settings_from_env({**_one("ConfigMap")["data"], **_one("Secret")["stringData"],
                               **{k: e["value"] for k, e in env.items() if "value" in e}})
    (port,) = c["ports"]
    assert port["containerPort"] == serve.serve_port
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(serve.state_dir) in mounts  # faust's data directory is writable
    service = _one("Service", "reco-serve")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"]}} in c["envFrom"]


def test_kernel_cache_is_copied_from_the_image_into_a_writable_volume(statefulset, container):
    """numba needs its cache directory writable and the root filesystem is read-only: the image's
    precompiled kernels (NUMBA_CACHE_DIR) are copied by an init container of the same image into
    an emptyDir mounted at that path — else every pod start compiles them for seconds."""
    import re

    from deploy_support import DOCKERFILE
    (cache_dir,) = re.findall(r"^ENV NUMBA_CACHE_DIR=(\S+)", DOCKERFILE.read_text(), re.M)
    pod = statefulset["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == container["image"]
    source, target = init["command"][-2:]
    assert init["command"][:2] == ["cp", "-a"] and source == cache_dir + "/."
    (init_mount,) = [m for m in init["volumeMounts"] if target.startswith(m["mountPath"])]
    (engine_mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == cache_dir]
    assert init_mount["name"] == engine_mount["name"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == engine_mount["name"]]
    assert "emptyDir" in volume and not engine_mount.get("readOnly")
