"""Helpers of the Envoy tests: a tiny upstream, an Envoy edge on free loopback ports in
front of it, and the ratelimit filter's own counters read from Envoy's admin interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devstack import ApiNode, ProcessGroup, free_ports, start_api, wait_api
from devstack.envoy import EnvoyNode, start_envoy
from devstack.envoy_config import UPSTREAM_CLUSTER, EdgeSettings

__all__ = ["FILTER_STATS", "filter_stats", "start_edge", "start_upstream"]

FILTER_STATS = ("ok", "over_limit", "error", "failure_mode_allowed")
"""The ratelimit filter's counters (``cluster.<route's cluster>.ratelimit.<name>``)."""


def start_upstream(group: ProcessGroup, name: str = "upstream") -> ApiNode:
    """``tests.envoy.upstream`` under uvicorn on a free port, once it answers."""
    (port,) = free_ports(1)
    return wait_api(start_api(group, name, port, {}, app="tests.envoy.upstream:app"))


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
