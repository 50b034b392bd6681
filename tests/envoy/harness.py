"""Helpers of the Envoy tests: a tiny upstream, an Envoy edge on free loopback ports in
front of it, and the ratelimit filter's own counters read from Envoy's admin interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devstack import (
    ApiNode,
    LimiterNode,
    ProcessGroup,
    StandaloneRedis,
    free_ports,
    start_api,
    start_limiter,
    wait_api,
    wait_limiter,
)
from devstack.envoy import EnvoyNode, start_envoy
from devstack.envoy_config import UPSTREAM_CLUSTER, EdgeSettings

__all__ = [
    "DOMAIN",
    "FILTER_STATS",
    "LIMITS_FILE",
    "filter_stats",
    "start_edge",
    "start_limiters",
    "start_upstream",
]

DOMAIN = "envoy-test"
LIMITS_FILE = Path(__file__).with_name("envoy_limits.yaml")
"""The limits the limiters load (``LIMITER_ENVOY_CONFIG``), domain ``DOMAIN``."""
# Decisions, not deadlines, are what these tests count: a busy 2-core machine must not
# turn one into a failure-mode answer.
_PATIENT = {"REDIS_TIMEOUT_MS": "3000", "LIMITER_DECISION_TIMEOUT_MS": "5000"}

FILTER_STATS = ("ok", "over_limit", "error", "failure_mode_allowed")
"""The ratelimit filter's counters (``cluster.<route's cluster>.ratelimit.<name>``)."""


def start_upstream(group: ProcessGroup, name: str = "upstream") -> ApiNode:
    """``tests.envoy.upstream`` under uvicorn on a free port, once it answers."""
    (port,) = free_ports(1)
    return wait_api(start_api(group, name, port, {}, app="tests.envoy.upstream:app"))


def start_limiters(group: ProcessGroup, redis: StandaloneRedis, count: int) -> list[LimiterNode]:
    """``count`` limiter replicas on ``redis`` with ``LIMITS_FILE``, once each serves."""
    ports = free_ports(count)
    env = {"REDIS_URL": redis.url, "LIMITER_ENVOY_CONFIG": str(LIMITS_FILE), **_PATIENT}
    nodes = [
        start_limiter(group, f"limiter-{i + 1}", port, env, wait=False)
        for i, port in enumerate(ports)
    ]
    return [wait_limiter(node) for node in nodes]


def start_edge(
    group: ProcessGroup,
    workdir: Path,
    *,
    limiters: Sequence[str],
    upstreams: Sequence[str],
    name: str = "envoy",
    **settings: Any,
) -> EnvoyNode:
    """An Envoy on free loopback ports (edge and admin) with ``settings`` (the other fields
    of ``EdgeSettings``), once its admin ``/ready`` and every upstream pass."""
    edge_port, admin_port = free_ports(2)
    envoy = start_envoy(
        group,
        name,
        workdir=workdir / name,
        settings=EdgeSettings(
            listen=("127.0.0.1", edge_port),
            admin=("127.0.0.1", admin_port),
            limiters=limiters,
            upstreams=upstreams,
            **settings,
        ),
    )
    envoy.wait_healthy(UPSTREAM_CLUSTER, len(upstreams))
    return envoy


def filter_stats(envoy: EnvoyNode) -> dict[str, int]:
    """The ratelimit filter's counters, by ``FILTER_STATS`` name."""
    return {
        name: envoy.counter(f"cluster.{UPSTREAM_CLUSTER}.ratelimit.{name}") for name in FILTER_STATS
    }
