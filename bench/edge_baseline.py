"""The edge bench's baseline deployment: two ``bench.limits_app`` replicas behind an Nginx
rendered from the same template as the stack's, on the stack's own Redis Sentinel set.

Both replicas get the stack's policy (``RATE_LIMIT`` per ``TIME_WINDOW``), its Sentinels,
master name and password. Nginx is started by ``devstack.nginx.start_nginx``, the launcher
the stack uses, with the same worker count; only the upstream servers differ.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from devstack import ApiNode, NginxNode, ProcessGroup, Stack, free_ports
from devstack.api import wait_api
from devstack.nginx import start_nginx

__all__ = ["Baseline", "start_baseline"]

REPLICAS = ("limits-1", "limits-2")


@dataclass(frozen=True)
class Baseline:
    """The running baseline: its replicas and its Nginx."""

    replicas: tuple[ApiNode, ...]
    nginx: NginxNode


def start_baseline(group: ProcessGroup, stack: Stack, prefix: Path) -> Baseline:
    """Start the replicas and Nginx in ``group`` (Nginx's files under ``prefix``) and
    return once Nginx answers and both replicas answer ``GET /health``.

    Raises ``devstack.DevstackError`` (with the failing process's log tail) when one does
    not come up; what was started stays in ``group`` for its owner to stop.
    """
    config, topology = stack.config, stack.topology
    host = config.host
    *app_ports, nginx_port = free_ports(len(REPLICAS) + 1, host)
    common = {
        "SENTINEL_HOSTS": topology.sentinel_hosts_env(),
        "REDIS_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password,
        "RATE_LIMIT": str(config.rate_limit),
        "TIME_WINDOW": str(config.time_window),
        "TRUSTED_PROXIES": host,
        "API_HOST": host,
    }
    replicas = []
    for name, port in zip(REPLICAS, app_ports, strict=True):
        env = {**common, "API_INSTANCE": name, "API_PORT": str(port)}
        process = group.start(name, [sys.executable, "-m", "bench.limits_app"], env)
        replicas.append(ApiNode(process, host, port))
    for replica in replicas:
        wait_api(replica, config.startup_timeout)
    nginx = start_nginx(
        group,
        "nginx-baseline",
        prefix=prefix,
        port=nginx_port,
        api_servers=(replicas[0].address, replicas[1].address),
        host=host,
        worker_processes=config.nginx_workers,
        timeout=config.startup_timeout,
    )
    return Baseline(tuple(replicas), nginx)
