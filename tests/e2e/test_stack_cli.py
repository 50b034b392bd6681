"""``python -m devstack`` (``make stack``): starts everything, prints where it listens, and on
SIGTERM stops every process it started, leaving no orphan and no temporary directory; with
``STACK_EDGE=envoy`` (``make stack ARGS='--edge envoy'``) Envoy is the edge instead of Nginx."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from devstack import ManagedProcess, ProcessGroup, wait_until
from devstack.stack_config import ENVOY_SERVICE, SERVICES, services

pytestmark = pytest.mark.integration

READY = "Ctrl-C stops everything."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_ports_env(tmp_path: Path) -> dict[str, str]:
    return {
        # Free ports, so a developer's own `make stack` on 8080 does not collide.
        "STACK_NGINX_PORT": "0",
        "STACK_API_PORTS": "0,0",
        "STACK_LIMITER_PORTS": "0,0",
        "STACK_LIMITER_METRICS_PORTS": "0,0",
        "STACK_PROMETHEUS_PORT": "0",
        "STACK_ENVOY_ADMIN_PORT": "0",
        "TMPDIR": str(tmp_path),
    }


def _start_stack(
    group: ProcessGroup, env: dict[str, str]
) -> tuple[ManagedProcess, str, dict[str, int]]:
    """Start ``python -m devstack`` in ``group``; once it printed its banner, return the
    process, the banner and the pid it printed for each service."""
    stack = group.start("devstack", [sys.executable, "-m", "devstack"], env=env)
    output = wait_until(
        lambda: text if READY in (text := stack.log_path.read_text()) else None,
        timeout=90,
        waiting_for="python -m devstack to print its banner",
        watch=(stack,),
    )
    pids = {
        name: int(pid)
        for name, pid in re.findall(r"^  (\S+) +\S+ +pid (\d+)$", output, re.MULTILINE)
    }
    return stack, output, pids


def _edge_url(banner: str) -> str:
    edge = re.search(r"edge:\s+(http://\S+)", banner)
    assert edge is not None, banner
    return edge[1]


def test_starts_prints_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    env = _free_ports_env(tmp_path)
    with ProcessGroup(tmp_path / "logs") as group:
        stack, output, pids = _start_stack(group, env)
        assert set(pids) == set(SERVICES), output
        response = httpx.get(f"{_edge_url(output)}/limited_endpoint", timeout=10)
        assert response.status_code == 200
        assert response.headers["RateLimit-Policy"] == '"default";q=10;w=60'
        prometheus = re.search(r"Prometheus:\s+(http://\S+)", output)
        assert prometheus is not None, output
        targets = httpx.get(f"{prometheus[1]}/api/v1/targets", timeout=10).json()
        health = {t["labels"]["service"]: t["health"] for t in targets["data"]["activeTargets"]}
        assert health == dict.fromkeys(("limiter-1", "limiter-2", "api-1", "api-2"), "up")

        stack.signal(signal.SIGTERM)
        assert stack.wait_exit(60) == 0, stack.log_tail()
    assert "stopped." in stack.log_path.read_text()
    survivors = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not survivors, f"left running: {survivors}"
    assert not list(tmp_path.glob("devstack-*")), "the temporary directory was not removed"


def test_envoy_as_the_edge(tmp_path: Path) -> None:
    env = {**_free_ports_env(tmp_path), "STACK_EDGE": ENVOY_SERVICE}
    with ProcessGroup(tmp_path / "logs") as group:
        stack, output, pids = _start_stack(group, env)
        assert set(pids) == set(services(ENVOY_SERVICE)), output
        response = httpx.get(f"{_edge_url(output)}/limited_endpoint", timeout=10)
        assert response.status_code == 200
        assert response.headers["server"] == "envoy"
        assert response.headers["x-ratelimit-limit"].split(",")[0] == "10"
        assert "/clusters" in output and "envoy.yaml" in output

        stack.signal(signal.SIGTERM)
        assert stack.wait_exit(60) == 0, stack.log_tail()
    survivors = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not survivors, f"left running: {survivors}"
