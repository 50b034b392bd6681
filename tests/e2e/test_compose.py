"""``deploy/docker-compose.yml`` is valid and declares what the local stack runs: the same
services, the same environment variable names for the limiters, the APIs and Nginx, and a
healthcheck on every service with start-up ordered on them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.nginx_config import local_variables
from devstack.stack_config import (
    API_SERVICES,
    LIMITER_SERVICES,
    NGINX_SERVICE,
    SERVICES,
    StackConfig,
    api_env,
    limiter_env,
)
from tests.e2e.compose import COMPOSE_FILE, ENVSUBST_SETTINGS, compose_env_names, load_compose

COMPOSE = load_compose()


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
    assert set(rendered["services"]) == set(SERVICES)
    nginx_ports = {str(port["published"]) for port in rendered["services"]["nginx"]["ports"]}
    assert nginx_ports == {"80", "8000"}


def test_same_services_as_the_local_stack() -> None:
    assert set(COMPOSE["services"]) == set(SERVICES)


@pytest.mark.parametrize("service", LIMITER_SERVICES)
def test_limiter_env_names_match(service: str) -> None:
    local = limiter_env(
        StackConfig(), port=1, sentinel_hosts="h:1", master_name="m", redis_password="p"
    )
    assert compose_env_names(COMPOSE, service) == set(local)


@pytest.mark.parametrize("service", API_SERVICES)
def test_api_env_names_match(service: str) -> None:
    local = api_env(StackConfig(), name=service, port=1)
    assert compose_env_names(COMPOSE, service) == set(local)
    assert COMPOSE["services"][service]["environment"]["API_INSTANCE"] == service


def test_nginx_env_names_match(tmp_path: Path) -> None:
    local = local_variables(listen="127.0.0.1:1", api_servers=("a:1", "b:2"), prefix=tmp_path)
    assert compose_env_names(COMPOSE, NGINX_SERVICE) - ENVSUBST_SETTINGS == set(local)


@pytest.mark.parametrize("service", SERVICES)
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
