"""What the local stack runs with: its services, their ports, and the environment each gets.

The services and the environment variable names are those of ``deploy/docker-compose.yml``
(a test holds the two together); only the values differ (loopback ports instead of service
names). Pure data, no processes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from devstack.envoy_config import EdgeSettings, RemoteAddress, Route
from devstack.ports import free_ports
from devstack.prometheus import DEFAULT_SCRAPE_INTERVAL, Targets

__all__ = [
    "API_SERVICES",
    "EDGES",
    "ENVOY_RATELIMIT_CONFIG",
    "ENVOY_SERVICE",
    "FAILURE_MODES",
    "LIMITER_SERVICES",
    "NGINX_SERVICE",
    "PROMETHEUS_SERVICE",
    "REDIS_SERVICES",
    "SENTINEL_SERVICES",
    "SERVICES",
    "StackConfig",
    "api_env",
    "edge_settings",
    "limiter_env",
    "scrape_targets",
    "services",
]

REDIS_SERVICES = ("redis-master", "redis-replica-1", "redis-replica-2")
"""The data nodes, named by the role each has at start (a failover changes roles, not names)."""
SENTINEL_SERVICES = ("sentinel-1", "sentinel-2", "sentinel-3")
LIMITER_SERVICES = ("limiter-1", "limiter-2")
API_SERVICES = ("api-1", "api-2")
NGINX_SERVICE = "nginx"
ENVOY_SERVICE = "envoy"
PROMETHEUS_SERVICE = "prometheus"
SERVICES = (
    *REDIS_SERVICES,
    *SENTINEL_SERVICES,
    *LIMITER_SERVICES,
    *API_SERVICES,
    NGINX_SERVICE,
    PROMETHEUS_SERVICE,
)
"""Every service, in start order (with the default edge, Nginx)."""

FAILURE_MODES = ("open", "closed")
EDGES = (NGINX_SERVICE, ENVOY_SERVICE)
ENVOY_RATELIMIT_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "envoy" / "ratelimit.yaml"
"""The edge's limits in envoyproxy/ratelimit's format, loaded by every limiter."""
ENVOY_DOMAIN = "edge"


def services(edge: str = NGINX_SERVICE) -> tuple[str, ...]:
    """Every service of a stack whose edge is ``edge`` (one of ``EDGES``), in start order."""
    return tuple(edge if name == NGINX_SERVICE else name for name in SERVICES)


@dataclass(frozen=True)
class StackConfig:
    """Ports, limits and timeouts of one local stack; port 0 (the default, which tests
    want) means "any free port"; ``python -m devstack`` picks fixed, memorable ones.

    ``rate_limit`` per ``time_window`` seconds is the ``default`` policy (a fixed window,
    aligned to the clock). ``failure_mode`` goes to the limiters (Redis down) and to the
    APIs (limiters down) alike. ``limiter_timeout_ms`` is the APIs' deadline per decision
    (``LIMITER_TIMEOUT_MS``), ``decision_timeout_ms`` the limiters' own deadline for Redis
    (``LIMITER_DECISION_TIMEOUT_MS``). ``down_after_ms`` is the Sentinels' failure
    detection time, ``startup_timeout`` bounds each wait for a service to come up, in
    seconds. ``limiter_metrics_ports`` are where the limiters serve ``/metrics``;
    Prometheus listens on ``prometheus_port`` and scrapes every ``scrape_interval`` (a
    Prometheus duration). ``limiter_workers`` is each limiter's ``LIMITER_WORKERS`` (one
    by default, as compose runs them). ``edge`` is the proxy in front of the APIs (one of
    ``EDGES``), listening on ``nginx_port`` either way; Envoy's admin interface listens on
    ``envoy_admin_port``, and its ratelimit filter asks the limiters for the limits of
    ``envoy_config`` (the limiters' ``LIMITER_ENVOY_CONFIG``).
    """

    host: str = "127.0.0.1"
    nginx_port: int = 0
    api_ports: tuple[int, int] = (0, 0)
    limiter_ports: tuple[int, int] = (0, 0)
    redis_ports: tuple[int, ...] = ()
    limiter_metrics_ports: tuple[int, int] = (0, 0)
    prometheus_port: int = 0
    scrape_interval: str = DEFAULT_SCRAPE_INTERVAL
    rate_limit: int = 10
    time_window: int = 60
    failure_mode: str = "open"
    limiter_timeout_ms: int = 50
    decision_timeout_ms: int = 100
    limiter_deny_cache_size: int = 10_000
    api_deny_cache_size: int = 1_000
    api_edge_deny_max_s: int = 5
    down_after_ms: int = 1000
    nginx_workers: str = "auto"
    limiter_workers: int = 1
    startup_timeout: float = 60.0
    edge: str = NGINX_SERVICE
    envoy_admin_port: int = 0
    envoy_config: Path = ENVOY_RATELIMIT_CONFIG

    def __post_init__(self) -> None:
        if self.failure_mode not in FAILURE_MODES:
            raise ValueError(
                f"failure_mode must be one of {FAILURE_MODES}, got {self.failure_mode!r}"
            )
        if self.edge not in EDGES:
            raise ValueError(f"edge must be one of {EDGES}, got {self.edge!r}")
        if self.redis_ports and len(self.redis_ports) != 6:
            raise ValueError("redis_ports: master, 2 replicas, 3 sentinels (6 ports)")
        ports = (
            self.nginx_port,
            *self.api_ports,
            *self.limiter_ports,
            *self.redis_ports,
            *self.limiter_metrics_ports,
            self.prometheus_port,
            self.envoy_admin_port,
        )
        for port in ports:
            if not 0 <= port < 65536:
                raise ValueError(f"port {port} is out of range")
        if min(self.rate_limit, self.time_window) < 1:
            raise ValueError("rate_limit and time_window must be at least 1")
        if min(self.limiter_timeout_ms, self.decision_timeout_ms, self.down_after_ms) < 1:
            raise ValueError("timeouts must be at least 1 ms")

    def with_ports_chosen(self) -> StackConfig:
        """A copy whose 0 ports are replaced by ports free on ``host`` right now."""
        wanted = [
            self.nginx_port,
            *self.api_ports,
            *self.limiter_ports,
            *self.limiter_metrics_ports,
            self.prometheus_port,
            self.envoy_admin_port,
        ]
        free = iter(free_ports(wanted.count(0), self.host))
        chosen = [port or next(free) for port in wanted]
        return dataclasses.replace(
            self,
            nginx_port=chosen[0],
            api_ports=(chosen[1], chosen[2]),
            limiter_ports=(chosen[3], chosen[4]),
            limiter_metrics_ports=(chosen[5], chosen[6]),
            prometheus_port=chosen[7],
            envoy_admin_port=chosen[8],
        )

    def limiter_addresses(self) -> list[str]:
        """``host:port`` of each limiter replica."""
        return [f"{self.host}:{port}" for port in self.limiter_ports]


def limiter_env(
    config: StackConfig,
    *,
    port: int,
    metrics_port: int,
    sentinel_hosts: str,
    master_name: str,
    redis_password: str,
    sentinel_password: str,
) -> dict[str, str]:
    """The environment of one limiter replica on ``port`` (metrics on ``metrics_port``)
    using the Sentinel backend."""
    return {
        "LIMITER_LISTEN": f"{config.host}:{port}",
        "LIMITER_METRICS_LISTEN": f"{config.host}:{metrics_port}",
        "LIMITER_BACKEND": "sentinel",
        "SENTINEL_HOSTS": sentinel_hosts,
        "REDIS_MASTER": master_name,
        "REDIS_PASSWORD": redis_password,
        "SENTINEL_PASSWORD": sentinel_password,
        "RATE_LIMIT": str(config.rate_limit),
        "TIME_WINDOW": str(config.time_window),
        "LIMITER_FAILURE_MODE": config.failure_mode,
        "LIMITER_DECISION_TIMEOUT_MS": str(config.decision_timeout_ms),
        "LIMITER_DENY_CACHE_SIZE": str(config.limiter_deny_cache_size),
        "LIMITER_WORKERS": str(config.limiter_workers),
        "LIMITER_ENVOY_CONFIG": str(config.envoy_config),
    }


def edge_settings(config: StackConfig, api_servers: tuple[str, str]) -> EdgeSettings:
    """What Envoy is rendered with as the edge: in front of ``api_servers``, asking every
    limiter for domain ``edge`` with one descriptor, the client's address, on
    ``/limited_endpoint`` (the other paths are not limited at the edge), failing closed
    (500) when ``failure_mode`` is ``closed``, each decision bounded by ``EdgeSettings``'s
    default timeout (retries included; roomier than the APIs' ``limiter_timeout_ms``, so
    the same rendering serves compose's busier containers)."""
    return EdgeSettings(
        listen=(config.host, config.nginx_port),
        admin=(config.host, config.envoy_admin_port),
        limiters=config.limiter_addresses(),
        upstreams=api_servers,
        domain=ENVOY_DOMAIN,
        failure_mode_deny=config.failure_mode == "closed",
        routes=(Route("/limited_endpoint", ((RemoteAddress(),),)), Route("/")),
    )


def api_env(config: StackConfig, *, name: str, port: int) -> dict[str, str]:
    """The environment of API replica ``name`` on ``port``: it balances over every limiter
    replica client-side and trusts ``X-Real-IP`` only from Nginx (which connects from
    ``host``)."""
    return {
        "API_INSTANCE": name,
        "API_HOST": config.host,
        "API_PORT": str(port),
        "LIMITER_ADDR": "ipv4:" + ",".join(config.limiter_addresses()),
        "LIMITER_TIMEOUT_MS": str(config.limiter_timeout_ms),
        "LIMITER_DENY_CACHE_SIZE": str(config.api_deny_cache_size),
        "LIMITER_EDGE_DENY_MAX_S": str(config.api_edge_deny_max_s),
        "LIMITER_FAILURE_MODE": config.failure_mode,
        "TRUSTED_PROXIES": config.host,
    }


def scrape_targets(config: StackConfig) -> Targets:
    """What Prometheus scrapes: every limiter's metrics port and every API's ``/metrics``,
    by service name (compose's ``deploy/prometheus/prometheus.yml`` names the same)."""
    return {
        "limiter": {
            name: f"{config.host}:{port}"
            for name, port in zip(LIMITER_SERVICES, config.limiter_metrics_ports, strict=True)
        },
        "api": {
            name: f"{config.host}:{port}"
            for name, port in zip(API_SERVICES, config.api_ports, strict=True)
        },
    }
