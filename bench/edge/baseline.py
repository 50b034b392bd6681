"""The two sides of the end-to-end part, and the baseline's processes.

The baseline: two ``bench.edge.limits_app`` replicas (uvicorn with the demo API's settings)
behind an Nginx rendered by ``devstack.nginx.start_nginx`` from the stack's template, with
the stack's worker count, on the stack's own Redis Sentinel set and policy. Only the
upstream servers differ from the stack's Nginx.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import with_descendants
from bench.edge.report import BASELINE, OURS
from devstack import ApiNode, NginxNode, ProcessGroup, Stack, free_port, free_ports
from devstack.api import wait_api
from devstack.nginx import start_nginx
from devstack.stack_config import API_SERVICES, LIMITER_SERVICES, NGINX_SERVICE

__all__ = ["Side", "start_sides"]

NGINX = "nginx"
APPS = "API replicas"
LIMITERS = "limiters"
REPLICAS = ("limits-1", "limits-2")
_UVICORN = ["--loop", "auto", "--http", "auto", "--lifespan", "on", "--no-proxy-headers"]
_UVICORN += ["--no-access-log", "--no-server-header"]


@dataclass(frozen=True)
class Side:
    """One side: its Nginx and its own processes by role."""

    name: str
    nginx: NginxNode
    roles: Mapping[str, list[int]]

    @property
    def pids(self) -> list[int]:
        return [pid for pids in self.roles.values() for pid in pids]


def _start_replicas(group: ProcessGroup, stack: Stack) -> list[ApiNode]:
    config, topology = stack.config, stack.topology
    env = {
        "SENTINEL_HOSTS": topology.sentinel_hosts_env(),
        "REDIS_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password,
        "SENTINEL_PASSWORD": topology.sentinel_password or "",
        "RATE_LIMIT": str(config.rate_limit),
        "TIME_WINDOW": str(config.time_window),
        "TRUSTED_PROXIES": config.host,
    }
    replicas = []
    for name, port in zip(REPLICAS, free_ports(len(REPLICAS), config.host), strict=True):
        argv = [sys.executable, "-m", "uvicorn", "bench.edge.limits_app:app", *_UVICORN]
        argv += ["--host", config.host, "--port", str(port)]
        process = group.start(name, argv, {**env, "API_INSTANCE": name})
        replicas.append(ApiNode(process, config.host, port))
    for replica in replicas:
        wait_api(replica, config.startup_timeout)
    return replicas


def start_sides(
    group: ProcessGroup, stack: Stack, prefix: Path
) -> tuple[Side, Side, dict[str, list[int]]]:
    """Start the baseline in ``group`` (Nginx's files under ``prefix``) next to the running
    ``stack``; return once its Nginx and both replicas answer. Returns ours, the baseline,
    and the roles both share (Redis).

    Raises ``devstack.DevstackError`` (with the failing process's log tail) when one does
    not come up; what was started stays in ``group`` for its owner to stop.
    """
    config = stack.config
    replicas = _start_replicas(group, stack)
    nginx = start_nginx(
        group,
        "nginx-baseline",
        prefix=prefix,
        port=free_port(config.host),
        api_servers=(replicas[0].address, replicas[1].address),
        host=config.host,
        worker_processes=config.nginx_workers,
        timeout=config.startup_timeout,
    )
    processes = stack.processes()
    ours = Side(
        OURS,
        stack.nginx,
        {
            NGINX: with_descendants(processes[NGINX_SERVICE].pid),
            APPS: [processes[name].pid for name in API_SERVICES],
            LIMITERS: [processes[name].pid for name in LIMITER_SERVICES],
        },
    )
    theirs = Side(
        BASELINE,
        nginx,
        {
            NGINX: with_descendants(nginx.process.pid),
            APPS: [replica.process.pid for replica in replicas],
        },
    )
    master, *replica_nodes = stack.topology.data_nodes
    shared = {
        "redis master": [master.process.pid],
        "redis replicas": [node.process.pid for node in replica_nodes],
        "sentinels": [node.process.pid for node in stack.topology.sentinels],
    }
    return ours, theirs, shared
