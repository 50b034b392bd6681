"""Real processes for tests and local runs: ports, managed processes, a Redis Sentinel
topology, a Redis Cluster, Prometheus, and the whole stack (``Stack``: Redis, limiters, APIs, Nginx,
Prometheus).

Import from here; the submodules are the implementation.
"""

from devstack.api import REPO_ROOT, ApiNode, start_api, wait_api
from devstack.errors import (
    DeadlineExceededError,
    DevstackError,
    ProcessDiedError,
    UnknownNodeError,
)
from devstack.limiter import LimiterNode, start_limiter, wait_limiter
from devstack.nginx import NginxNode
from devstack.ports import free_port, free_ports
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_tcp
from devstack.prometheus import PrometheusNode, start_prometheus
from devstack.redis_cluster import ClusterNode, RedisCluster
from devstack.redis_probes import Address
from devstack.redis_server import StandaloneRedis, start_redis
from devstack.redis_topology import NodeHandle, RedisTopology
from devstack.scrape import Samples, scrape
from devstack.stack import Stack
from devstack.stack_config import StackConfig
from devstack.waiting import wait_until
from devstack.wrk import WRK_SCRIPT, parse_wrk_report

__all__ = [
    "REPO_ROOT",
    "WRK_SCRIPT",
    "Address",
    "ApiNode",
    "ClusterNode",
    "DeadlineExceededError",
    "DevstackError",
    "LimiterNode",
    "ManagedProcess",
    "NginxNode",
    "NodeHandle",
    "ProcessDiedError",
    "ProcessGroup",
    "PrometheusNode",
    "RedisCluster",
    "RedisTopology",
    "Samples",
    "Stack",
    "StackConfig",
    "StandaloneRedis",
    "UnknownNodeError",
    "free_port",
    "free_ports",
    "parse_wrk_report",
    "scrape",
    "start_api",
    "start_limiter",
    "start_prometheus",
    "start_redis",
    "wait_api",
    "wait_for_tcp",
    "wait_limiter",
    "wait_until",
]
