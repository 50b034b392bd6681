"""``deploy/k8s``: rendered, validated against the Kubernetes schemas, and wired as the code
expects, without a cluster.

Each ``check_*`` holds one property of the rendered objects and raises ``AssertionError``
when it does not hold. ``test_manifests`` runs them on ``deploy/k8s``; ``test_check_fails``
runs each on a copy broken in one way and requires it to fail, so no check passes vacuously.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from api.demo_settings import DemoSettings
from limiter_service.errors import ConfigError as ServiceConfigError
from limiter_service.health import LIVENESS_SERVICE, SERVICES
from limiter_service.settings import Settings, load_settings
from ratelimit_client import ConfigError as ClientConfigError
from ratelimit_client.settings import LimiterSettings
from tests.deploy.kustomize import Manifest, kubectl, render, render_python

K8S_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The oldest Kubernetes these manifests are for (gRPC probes are GA since 1.27).
K8S_VERSION = "1.29"
APP_UID = 10001  # the Dockerfiles' `useradd --uid`
# What a secretKeyRef or the downward API would put in an env var at run time.
SECRET_STAND_IN = "secret-from-kubernetes"
POD_NAME_STAND_IN = "api-5d8f7c9b6-x2x7q"

Objects = list[Manifest]
Check = Callable[[Objects], None]


# -- looking things up ------------------------------------------------------------------


def find(objects: Objects, kind: str, name: str) -> Manifest:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(objects: Objects, deployment: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = find(objects, "Deployment", deployment)["spec"]["template"][
        "spec"
    ]["containers"]
    assert len(containers) == 1, f"Deployment/{deployment}: expected one container"
    return containers[0]


def pod_spec(objects: Objects, deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def env_var(objects: Objects, deployment: str, name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        e for e in container(objects, deployment).get("env", []) if e["name"] == name
    ]
    assert len(entries) == 1, f"Deployment/{deployment}: expected one env var {name}"
    return entries[0]


def resolved_env(objects: Objects, deployment: str) -> dict[str, str]:
    """The container's environment as the kubelet would set it: ConfigMap keys looked up
    in the rendered ConfigMaps, Secrets and the pod's name replaced by stand-ins."""
    env: dict[str, str] = {}
    for entry in container(objects, deployment).get("env", []):
        source = entry.get("valueFrom")
        if source is None:
            env[entry["name"]] = entry.get("value", "")
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = find(objects, "ConfigMap", ref["name"]).get("data", {})
            assert ref["key"] in data, f"ConfigMap/{ref['name']} has no key {ref['key']}"
            env[entry["name"]] = data[ref["key"]]
        elif "secretKeyRef" in source:
            env[entry["name"]] = SECRET_STAND_IN
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = POD_NAME_STAND_IN
        else:
            raise AssertionError(f"{deployment}: {entry['name']}: unexpected source {source}")
    return env


def port_of(address: str) -> int:
    """The port of ``host:port`` (or ``dns:///host:port``)."""
    return int(address.rpartition(":")[2])


def named_port(objects: Objects, deployment: str, name: str) -> int:
    ports = [p for p in container(objects, deployment).get("ports", []) if p.get("name") == name]
    assert len(ports) == 1, f"Deployment/{deployment}: expected one port named {name!r}"
    port: int = ports[0]["containerPort"]
    return port


def selects(selector: Mapping[str, str], objects: Objects, deployment: str) -> bool:
    labels = find(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def limiter_env_names() -> set[str]:
    """Every env var ``limiter_service.settings.Settings`` reads (its aliases)."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        assert alias is not None, f"Settings.{name} has no env var alias"
        names.update(str(choice) for choice in getattr(alias, "choices", [alias]))
    return names


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.names.add(str(key))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def api_env_names() -> set[str]:
    """Every env var the API reads: the client's settings and the demo's own."""
    recorder = _Recorder()
    LimiterSettings.from_env(recorder)
    DemoSettings.from_env(recorder)
    assert "LIMITER_ADDR" in recorder.names and "API_PORT" in recorder.names
    return recorder.names


# -- the checks -------------------------------------------------------------------------


def check_schemas(objects: Objects) -> None:
    """Every object is valid for its kind (strict: no unknown fields)."""
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            raise AssertionError(f"{name}: {path}: {exc.message}") from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise AssertionError(f"{name}: {exc.message}") from None


def check_limiter_probes(objects: Objects) -> None:
    """Readiness and liveness are gRPC health checks on the port the limiter listens on."""
    grpc_port = named_port(objects, "limiter", "grpc")
    listen = resolved_env(objects, "limiter")["LIMITER_LISTEN"]
    assert port_of(listen) == grpc_port, f"LIMITER_LISTEN={listen} is not port {grpc_port}"
    for probe in ("readinessProbe", "livenessProbe"):
        spec = container(objects, "limiter").get(probe, {})
        assert set(spec) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert spec["grpc"]["port"] == grpc_port == 50051, probe
    # Readiness follows Redis ("", the overall health); liveness asks the liveness-only
    # name, SERVING until shutdown (both in limiter_service/health.py).
    readiness = container(objects, "limiter")["readinessProbe"]["grpc"]
    liveness = container(objects, "limiter")["livenessProbe"]["grpc"]
    assert readiness.get("service", "") == "" and "" in SERVICES
    assert liveness.get("service") == LIVENESS_SERVICE


def check_api_probes(objects: Objects) -> None:
    """Readiness and liveness are GET /health on the port the API listens on."""
    http_port = named_port(objects, "api", "http")
    assert int(resolved_env(objects, "api")["API_PORT"]) == http_port == 8000
    for probe in ("readinessProbe", "livenessProbe"):
        spec = container(objects, "api").get(probe, {})
        assert set(spec) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"httpGet"}, probe
        assert spec["httpGet"]["path"] == "/health", probe
        assert spec["httpGet"]["port"] in (http_port, "http"), probe


def check_services(objects: Objects) -> None:
    """The limiter's Service is headless; the API's is not; both select their pods and
    reach the container port."""
    limiter = find(objects, "Service", "limiter")["spec"]
    assert limiter.get("clusterIP") == "None", "the limiter Service must be headless"
    assert selects(limiter["selector"], objects, "limiter"), "limiter Service selector"
    assert [p["targetPort"] for p in limiter["ports"]] in (["grpc"], [50051])
    api = find(objects, "Service", "api")["spec"]
    assert api.get("clusterIP", "") != "None" and api.get("type", "ClusterIP") == "ClusterIP"
    assert selects(api["selector"], objects, "api"), "api Service selector"
    assert [p["targetPort"] for p in api["ports"]] in (["http"], [8000])


def check_limiter_addr(objects: Objects) -> None:
    """The API's LIMITER_ADDR is ``dns:///`` + the headless Service's name, namespace and port."""
    addr = resolved_env(objects, "api")["LIMITER_ADDR"]
    assert addr.startswith("dns:///"), f"LIMITER_ADDR={addr!r}: clients balance only via dns:///"
    host, _, port = addr.removeprefix("dns:///").rpartition(":")
    service = find(objects, "Service", "limiter")
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert host in (f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"), addr
    assert int(port) in [p["port"] for p in service["spec"]["ports"]], addr
    assert namespace == find(objects, "Deployment", "api")["metadata"]["namespace"]


def check_secret_references(objects: Objects) -> None:
    """The Redis and Sentinel passwords come from a Secret that is only referenced: none is
    rendered, no password is a literal, and the example names the same Secret and keys."""
    assert not [o for o in objects if o["kind"] == "Secret"], "a Secret is in the manifests"
    example = yaml.safe_load((K8S_DIR / "secret.example.yaml").read_text())
    assert set(example["stringData"].values()) == {"CHANGE-ME"}, "real values in the example"
    for name in ("REDIS_PASSWORD", "SENTINEL_PASSWORD"):
        entry = env_var(objects, "limiter", name)
        assert "value" not in entry, f"{name} is a literal"
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == example["metadata"]["name"], name
        assert ref["key"] in example["stringData"], name
    for config in (o for o in objects if o["kind"] == "ConfigMap"):
        assert not [k for k in config.get("data", {}) if "PASSWORD" in k.upper()], config


def check_env_names(objects: Objects) -> None:
    """Every env var set is one the code reads (a typo would be ignored at run time)."""
    limiter = {e["name"] for e in container(objects, "limiter").get("env", [])}
    assert limiter <= limiter_env_names(), f"unknown: {sorted(limiter - limiter_env_names())}"
    api = {e["name"] for e in container(objects, "api").get("env", [])}
    assert api <= api_env_names(), f"unknown: {sorted(api - api_env_names())}"


def check_settings_load(objects: Objects) -> None:
    """The environments pass the code's own start-up validation, the limiter on Sentinel."""
    try:
        with mock.patch.dict(os.environ, resolved_env(objects, "limiter"), clear=True):
            settings = load_settings()
        api = resolved_env(objects, "api")
        LimiterSettings.from_env(api)
        DemoSettings.from_env(api)
    except (ServiceConfigError, ClientConfigError) as exc:
        raise AssertionError(str(exc)) from None
    assert settings.sentinel_hosts and settings.resolved_backend().value == "sentinel"
    assert settings.metrics_address is not None


def check_policies(objects: Objects) -> None:
    """LIMITER_POLICIES is a file of a ConfigMap mounted as a directory (no subPath, so
    updates reach the pod), and its content passes ``check-config``."""
    path = Path(resolved_env(objects, "limiter")["LIMITER_POLICIES"])
    mounts = [
        m
        for m in container(objects, "limiter").get("volumeMounts", [])
        if m["mountPath"].rstrip("/") == str(path.parent)
    ]
    assert len(mounts) == 1, f"nothing mounted at {path.parent}"
    assert "subPath" not in mounts[0], "a subPath mount never sees ConfigMap updates"
    volume = next(
        v for v in pod_spec(objects, "limiter")["volumes"] if v["name"] == mounts[0]["name"]
    )
    data = find(objects, "ConfigMap", volume["configMap"]["name"]).get("data", {})
    assert path.name in data, f"the ConfigMap has no key {path.name}"
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / path.name
        policies.write_text(data[path.name])
        result = subprocess.run(
            [sys.executable, "-m", "limiter_service", "check-config", str(policies)],
            capture_output=True,
            text=True,
        )
    assert result.returncode == 0, result.stderr


def check_security(objects: Objects) -> None:
    """Non-root uid 10001, read-only root, no privilege escalation, no capabilities, and
    requests and limits for CPU and memory, in both Deployments."""
    for deployment in ("limiter", "api"):
        pod = pod_spec(objects, deployment).get("securityContext", {})
        box = container(objects, deployment).get("securityContext", {})
        assert pod.get("runAsNonRoot") is True and pod.get("runAsUser") == APP_UID, deployment
        assert box.get("runAsUser", APP_UID) == APP_UID, deployment
        assert box.get("allowPrivilegeEscalation") is False, deployment
        assert box.get("readOnlyRootFilesystem") is True, deployment
        assert box.get("privileged", False) is False, deployment
        assert box.get("capabilities", {}).get("drop") == ["ALL"], deployment
        assert not box.get("capabilities", {}).get("add"), deployment
        resources = container(objects, deployment).get("resources", {})
        for bound in ("requests", "limits"):
            assert set(resources.get(bound, {})) >= {"cpu", "memory"}, (deployment, bound)


def check_termination_grace(objects: Objects) -> None:
    """The kubelet waits longer than the limiter drains (LIMITER_SHUTDOWN_GRACE_S)."""
    env = resolved_env(objects, "limiter")
    default = Settings.model_fields["shutdown_grace_s"].default
    drain = float(env.get("LIMITER_SHUTDOWN_GRACE_S", default))
    grace = pod_spec(objects, "limiter").get("terminationGracePeriodSeconds", 30)
    assert grace > drain, f"terminationGracePeriodSeconds {grace} <= drain {drain}"


def check_scrape_annotations(objects: Objects) -> None:
    """Prometheus scrapes the limiter's metrics port (LIMITER_METRICS_LISTEN, :9090)."""
    annotations = find(objects, "Deployment", "limiter")["spec"]["template"]["metadata"].get(
        "annotations", {}
    )
    assert annotations.get("prometheus.io/scrape") == "true", annotations
    metrics_port = port_of(resolved_env(objects, "limiter")["LIMITER_METRICS_LISTEN"])
    scraped = int(annotations.get("prometheus.io/port", 0))
    assert scraped == metrics_port == 9090, f"scraped :{scraped}, metrics on :{metrics_port}"
    assert named_port(objects, "limiter", "metrics") == metrics_port
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def check_disruption_and_scaling(objects: Objects) -> None:
    """Each Deployment has a PDB selecting its pods and an HPA scaling it from two pods up;
    the Deployment leaves the replica count to the HPA."""
    for deployment in ("limiter", "api"):
        assert "replicas" not in find(objects, "Deployment", deployment)["spec"], deployment
        pdbs = [
            o
            for o in objects
            if o["kind"] == "PodDisruptionBudget"
            and selects(o["spec"]["selector"].get("matchLabels", {}), objects, deployment)
        ]
        assert len(pdbs) == 1, f"{deployment}: {len(pdbs)} PodDisruptionBudgets"
        hpas = [
            o["spec"]
            for o in objects
            if o["kind"] == "HorizontalPodAutoscaler"
            and o["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
        ]
        assert len(hpas) == 1, f"{deployment}: {len(hpas)} HorizontalPodAutoscalers"
        assert hpas[0].get("minReplicas", 1) >= 2, deployment
        # The budget must leave a pod serving and still let a node drain.
        budget = pdbs[0]["spec"]
        if "maxUnavailable" in budget:
            assert 1 <= budget["maxUnavailable"] < hpas[0]["minReplicas"], deployment
        else:
            assert budget["minAvailable"] < hpas[0]["minReplicas"], deployment


CHECKS: list[Check] = [
    check_schemas,
    check_limiter_probes,
    check_api_probes,
    check_services,
    check_limiter_addr,
    check_secret_references,
    check_env_names,
    check_settings_load,
    check_policies,
    check_security,
    check_termination_grace,
    check_scrape_annotations,
    check_disruption_and_scaling,
]


# -- one way to break each check ---------------------------------------------------------


def _set_env(deployment: str, name: str, value: str) -> Callable[[Objects], None]:
    def mutate(objects: Objects) -> None:
        entry = env_var(objects, deployment, name)
        entry.clear()
        entry.update(name=name, value=value)

    return mutate


def _config(name: str, key: str, value: object) -> Callable[[Objects], None]:
    def mutate(objects: Objects) -> None:
        find(objects, "ConfigMap", name)["data"][key] = value

    return mutate


def _rename_env(deployment: str, old: str, new: str) -> Callable[[Objects], None]:
    def mutate(objects: Objects) -> None:
        env_var(objects, deployment, old)["name"] = new

    return mutate


def _add_secret(objects: Objects) -> None:
    objects.append(yaml.safe_load((K8S_DIR / "secret.example.yaml").read_text()))


def _unknown_probe_field(objects: Objects) -> None:
    container(objects, "limiter")["readinessProbe"]["grpc"]["portt"] = 50051


def _readiness_port(objects: Objects) -> None:
    container(objects, "limiter")["readinessProbe"]["grpc"]["port"] = 9090


def _liveness_tcp(objects: Objects) -> None:
    container(objects, "limiter")["livenessProbe"] = {"tcpSocket": {"port": 50051}}


def _api_probe_path(objects: Objects) -> None:
    container(objects, "api")["readinessProbe"]["httpGet"]["path"] = "/"


def _api_probe_port(objects: Objects) -> None:
    container(objects, "api")["livenessProbe"]["httpGet"]["port"] = 50051


def _not_headless(objects: Objects) -> None:
    del find(objects, "Service", "limiter")["spec"]["clusterIP"]


def _api_selector(objects: Objects) -> None:
    find(objects, "Service", "api")["spec"]["selector"] = {"app.kubernetes.io/name": "limiter"}


def _policies_subpath(objects: Objects) -> None:
    container(objects, "limiter")["volumeMounts"][0]["subPath"] = "policies.yaml"


def _run_as_root(objects: Objects) -> None:
    pod_spec(objects, "api")["securityContext"]["runAsUser"] = 0


def _keep_capabilities(objects: Objects) -> None:
    del container(objects, "limiter")["securityContext"]["capabilities"]


def _writable_root(objects: Objects) -> None:
    container(objects, "api")["securityContext"]["readOnlyRootFilesystem"] = False


def _no_limits(objects: Objects) -> None:
    del container(objects, "limiter")["resources"]["limits"]


def _short_grace(objects: Objects) -> None:
    pod_spec(objects, "limiter")["terminationGracePeriodSeconds"] = 10


def _scrape_port(objects: Objects) -> None:
    find(objects, "Deployment", "limiter")["spec"]["template"]["metadata"]["annotations"][
        "prometheus.io/port"
    ] = "50051"


def _fixed_replicas(objects: Objects) -> None:
    find(objects, "Deployment", "api")["spec"]["replicas"] = 3


def _hpa_target(objects: Objects) -> None:
    find(objects, "HorizontalPodAutoscaler", "limiter")["spec"]["scaleTargetRef"]["name"] = "lim"


def _pdb_selector(objects: Objects) -> None:
    find(objects, "PodDisruptionBudget", "limiter")["spec"]["selector"]["matchLabels"] = {
        "app": "limiter"
    }


def _pdb_blocks_drains(objects: Objects) -> None:
    find(objects, "PodDisruptionBudget", "api")["spec"]["maxUnavailable"] = 0


BREAKAGES: list[tuple[str, Check, Callable[[Objects], None]]] = [
    ("unknown-field", check_schemas, _unknown_probe_field),
    ("data-not-string", check_schemas, _config("api-config", "LIMITER_TIMEOUT_MS", 50)),
    ("readiness-port", check_limiter_probes, _readiness_port),
    ("liveness-tcp", check_limiter_probes, _liveness_tcp),
    ("listen-port", check_limiter_probes, _set_env("limiter", "LIMITER_LISTEN", "0.0.0.0:6000")),
    ("api-probe-path", check_api_probes, _api_probe_path),
    ("api-probe-port", check_api_probes, _api_probe_port),
    ("not-headless", check_services, _not_headless),
    ("api-selector", check_services, _api_selector),
    ("addr-no-dns", check_limiter_addr, _config("api-config", "LIMITER_ADDR", "limiter:50051")),
    (
        "addr-namespace",
        check_limiter_addr,
        _config("api-config", "LIMITER_ADDR", "dns:///limiter.default.svc:50051"),
    ),
    (
        "addr-port",
        check_limiter_addr,
        _config("api-config", "LIMITER_ADDR", "dns:///limiter.ratelimit.svc:9090"),
    ),
    ("secret-rendered", check_secret_references, _add_secret),
    ("password-literal", check_secret_references, _set_env("limiter", "REDIS_PASSWORD", "hunter2")),
    (
        "limiter-env-typo",
        check_env_names,
        _rename_env("limiter", "LIMITER_POLICIES", "LIMITER_POLICY"),
    ),
    ("api-env-typo", check_env_names, _rename_env("api", "LIMITER_ADDR", "LIMITER_ADDRESS")),
    (
        "sentinel-hosts",
        check_settings_load,
        _config("limiter-config", "SENTINEL_HOSTS", "sentinel"),
    ),
    ("api-timeout", check_settings_load, _config("api-config", "LIMITER_TIMEOUT_MS", "0")),
    (
        "policies-invalid",
        check_policies,
        _config(
            "limiter-policies", "policies.yaml", "policies: {default: {limit: 0, window: 1m}}\n"
        ),
    ),
    ("policies-subpath", check_policies, _policies_subpath),
    (
        "policies-path",
        check_policies,
        _set_env("limiter", "LIMITER_POLICIES", "/etc/limiter/policies.yaml"),
    ),
    ("run-as-root", check_security, _run_as_root),
    ("capabilities", check_security, _keep_capabilities),
    ("writable-root", check_security, _writable_root),
    ("no-limits", check_security, _no_limits),
    ("short-grace", check_termination_grace, _short_grace),
    ("scrape-port", check_scrape_annotations, _scrape_port),
    ("fixed-replicas", check_disruption_and_scaling, _fixed_replicas),
    ("hpa-target", check_disruption_and_scaling, _hpa_target),
    ("pdb-selector", check_disruption_and_scaling, _pdb_selector),
    ("pdb-blocks-drains", check_disruption_and_scaling, _pdb_blocks_drains),
]


# -- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> Objects:
    return render(K8S_DIR)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_manifests(rendered: Objects, check: Check) -> None:
    check(copy.deepcopy(rendered))


@pytest.mark.parametrize(
    ("check", "breakage"),
    [(check, breakage) for _, check, breakage in BREAKAGES],
    ids=[name for name, _, _ in BREAKAGES],
)
def test_check_fails(rendered: Objects, check: Check, breakage: Callable[[Objects], None]) -> None:
    broken = copy.deepcopy(rendered)
    breakage(broken)
    with pytest.raises(AssertionError):
        check(broken)


def test_every_check_can_fail() -> None:
    assert {check for _, check, _ in BREAKAGES} == set(CHECKS)


def test_namespaced_objects_share_the_namespace(rendered: Objects) -> None:
    namespaces = {o["metadata"].get("namespace") for o in rendered if o["kind"] != "Namespace"}
    assert namespaces == {find(rendered, "Namespace", "ratelimit")["metadata"]["name"]}


@pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed")
def test_python_renderer_matches_kubectl() -> None:
    """The fallback renderer gives kubectl's objects, so a machine without kubectl tests the
    same manifests."""

    def by_name(objects: Objects) -> dict[tuple[str, str], Manifest]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    assert by_name(render_python(K8S_DIR)) == by_name(render(K8S_DIR))
