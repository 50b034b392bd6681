"""The Envoy bootstrap: an HTTP edge whose ``ratelimit`` filter asks our limiters, as data.

``bootstrap`` builds Envoy's v3 bootstrap as plain dicts and lists, ``render`` writes it as
YAML (``envoy -c`` takes it as is). Nothing here starts a process (``devstack.envoy`` does):
the same text is rendered for ``make stack`` and the tests with loopback addresses, and is
checked into ``deploy/envoy/envoy.yaml`` with compose's service names (a test holds the two
together).

The shape: one listener whose HTTP connection manager runs ``envoy.filters.http.ratelimit``
then the router; each route carries ``rate_limits`` whose actions Envoy turns into
descriptors for ``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``; a
``rate_limit_service`` cluster (gRPC over HTTP/2, round robin over the limiter replicas,
health-checked, failed calls retried on another replica); an ``upstream`` cluster over the
API replicas; the admin interface on its own port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

__all__ = [
    "RATE_LIMIT_CLUSTER",
    "RLS_SERVICE",
    "UPSTREAM_CLUSTER",
    "Action",
    "EdgeSettings",
    "GenericKey",
    "RemoteAddress",
    "RequestHeader",
    "Route",
    "bootstrap",
    "render",
]

RATE_LIMIT_CLUSTER = "rate_limit_service"
RLS_SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
"""The service Envoy calls, also the ``grpc.health.v1`` name our limiters report it under."""
UPSTREAM_CLUSTER = "upstream"

_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit"
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
_ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_PREVIOUS_HOSTS_TYPE = (
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
)
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class Action(Protocol):
    """One entry of a descriptor: what Envoy's route-level ``rate_limits`` action yields."""

    def to_config(self) -> dict[str, Any]:
        """The action as Envoy's ``config.route.v3.RateLimit.Action``."""
        ...


@dataclass(frozen=True)
class RemoteAddress:
    """``remote_address``: the client's address (the connection's peer: the listener uses
    the remote address, not ``X-Forwarded-For``)."""

    def to_config(self) -> dict[str, Any]:
        return {"remote_address": {}}


@dataclass(frozen=True)
class RequestHeader:
    """``request_headers``: the value of request header ``header`` under descriptor key
    ``key``. Without the header the whole descriptor is left out (``skip_if_absent``) or,
    when ``skip_if_absent`` is false, Envoy sends none of the route's descriptors."""

    header: str
    key: str
    skip_if_absent: bool = True

    def to_config(self) -> dict[str, Any]:
        return {
            "request_headers": {
                "header_name": self.header,
                "descriptor_key": self.key,
                "skip_if_absent": self.skip_if_absent,
            }
        }


@dataclass(frozen=True)
class GenericKey:
    """``generic_key``: a fixed ``value`` under ``key`` (Envoy's default key is
    ``generic_key``)."""

    value: str
    key: str = "generic_key"

    def to_config(self) -> dict[str, Any]:
        return {"generic_key": {"descriptor_value": self.value, "descriptor_key": self.key}}


@dataclass(frozen=True)
class Route:
    """Requests whose path starts with ``prefix`` go to the upstream; each entry of
    ``descriptors`` (a sequence of actions) becomes one descriptor of the request's one
    ``ShouldRateLimit`` call. No descriptors: the route is not rate-limited."""

    prefix: str
    descriptors: tuple[tuple[Action, ...], ...] = ()

    def to_config(self) -> dict[str, Any]:
        route: dict[str, Any] = {
            "cluster": UPSTREAM_CLUSTER,
            "timeout": "10s",
            # Like the Nginx edge: an idempotent request is tried on the other replica when
            # one is down; a 429 or 503 an API replica answers is passed on as is.
            "retry_policy": {"retry_on": "connect-failure,reset", "num_retries": 1},
        }
        if self.descriptors:
            route["rate_limits"] = [
                {"actions": [action.to_config() for action in descriptor]}
                for descriptor in self.descriptors
            ]
        return {"match": {"prefix": self.prefix}, "route": route}


def _default_routes() -> tuple[Route, ...]:
    return (Route("/", ((RemoteAddress(),),)),)


@dataclass(frozen=True)
class EdgeSettings:
    """What one Envoy edge is rendered with.

    ``listen`` and ``admin`` are ``(address, port)``; ``limiters`` and ``upstreams``
    ``host:port`` each (names are resolved by DNS, addresses used as they are).
    ``domain`` goes with every ``ShouldRateLimit`` call. ``failure_mode_deny``: when the
    limiters cannot be reached or answer an error, Envoy answers 500 (true) or lets the
    request through (false, Envoy's default). ``timeout_ms`` bounds one decision, retries
    included. ``health_service`` is the ``grpc.health.v1`` name the limiters are probed
    with (``""``: the server's overall health; our limiters report ``RLS_SERVICE``).
    ``routes`` are matched in order.
    """

    listen: tuple[str, int]
    admin: tuple[str, int]
    limiters: Sequence[str]
    upstreams: Sequence[str]
    domain: str = "edge"
    failure_mode_deny: bool = False
    timeout_ms: int = 500
    health_service: str = RLS_SERVICE
    health_interval_ms: int = 1000
    routes: tuple[Route, ...] = field(default_factory=_default_routes)

    def __post_init__(self) -> None:
        if not self.limiters or not self.upstreams:
            raise ValueError("an Envoy edge needs at least one limiter and one upstream")
        if not self.domain:
            raise ValueError("domain must not be empty")
        if self.timeout_ms < 1 or self.health_interval_ms < 1:
            raise ValueError("timeout_ms and health_interval_ms must be at least 1")
        for address in (*self.limiters, *self.upstreams):
            _split(address)


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {address!r}")
    return host, int(port)


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    return all(part.isdigit() for part in host.split(".")) and host.count(".") == 3


def _cluster(
    name: str, addresses: Sequence[str], *, http2: bool, health_check: dict[str, Any]
) -> dict[str, Any]:
    hosts = [_split(address) for address in addresses]
    cluster: dict[str, Any] = {
        "name": name,
        "connect_timeout": "0.25s",
        "type": "STATIC" if all(_is_ip(host) for host, _ in hosts) else "STRICT_DNS",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}
                for host, port in hosts
            ],
        },
        "health_checks": [health_check],
        # A replica that fails connections or answers errors five times in a row is
        # ejected for a while, before its health check even notices.
        "outlier_detection": {
            "consecutive_5xx": 5,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
    }
    if cluster["type"] == "STRICT_DNS":
        # Service names (compose): a replica that comes back with another address is found
        # within a second, and only IPv4 is asked for (the networks have no IPv6).
        cluster["dns_refresh_rate"] = "1s"
        cluster["dns_lookup_family"] = "V4_ONLY"
    if http2:
        # Envoy allows 3 retries in flight per cluster by default: too few when a replica
        # dies under a busy edge, and each call retries at most twice anyway.
        cluster["circuit_breakers"] = {"thresholds": [{"max_retries": 1024}]}
        cluster["typed_extension_protocol_options"] = {
            _HTTP_OPTIONS_KEY: {
                "@type": _HTTP_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _health_check(interval_ms: int, check: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "timeout": f"{interval_ms / 1000:g}s",
        "interval": f"{interval_ms / 1000:g}s",
        "unhealthy_threshold": 2,
        "healthy_threshold": 1,
        **check,
    }


def _rate_limit_filter(settings: EdgeSettings) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": _FILTER_TYPE,
            "domain": settings.domain,
            "failure_mode_deny": settings.failure_mode_deny,
            "timeout": f"{settings.timeout_ms / 1000:g}s",
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            # A denied request is 429, as our own edge answers, not gRPC's 8 mapped to 429.
            "rate_limited_as_resource_exhausted": False,
            "rate_limit_service": {
                "transport_api_version": "V3",
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": RATE_LIMIT_CLUSTER},
                    "timeout": f"{settings.timeout_ms / 1000:g}s",
                    # A replica that is gone (connection refused or reset, calls in flight
                    # on it lost) costs a retry on another, not a failure-mode answer.
                    "retry_policy": {
                        "retry_on": "connect-failure,refused-stream,reset,unavailable",
                        "num_retries": 2,
                        "retry_host_predicate": [
                            {
                                "name": "envoy.retry_host_predicates.previous_hosts",
                                "typed_config": {"@type": _PREVIOUS_HOSTS_TYPE},
                            }
                        ],
                        "host_selection_retry_max_attempts": 3,
                    },
                },
            },
        },
    }


def bootstrap(settings: EdgeSettings) -> dict[str, Any]:
    """Envoy's v3 bootstrap for ``settings``, as YAML-ready data."""
    listen_host, listen_port = settings.listen
    admin_host, admin_port = settings.admin
    manager = {
        "@type": _HCM_TYPE,
        "stat_prefix": "edge",
        # The client is the connection's peer, whatever X-Forwarded-For says: that is the
        # address remote_address descriptors carry and X-Real-IP tells the API.
        "use_remote_address": True,
        "route_config": {
            "name": "edge",
            "virtual_hosts": [
                {
                    "name": "api",
                    "domains": ["*"],
                    "routes": [route.to_config() for route in settings.routes],
                }
            ],
            "request_headers_to_add": [
                {
                    "header": {
                        "key": "x-real-ip",
                        "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "request_headers_to_remove": ["forwarded"],
            # The API's hint to Nginx's deny cache (README "Deny cache"); Nginx hides it
            # from clients by default, Envoy must be told to.
            "response_headers_to_remove": ["x-accel-expires"],
        },
        "http_filters": [
            _rate_limit_filter(settings),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER_TYPE}},
        ],
    }
    limiter_check = {"grpc_health_check": {"service_name": settings.health_service}}
    api_check = {"http_health_check": {"path": "/health"}}
    return {
        "admin": {"address": _socket_address(admin_host, admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "edge",
                    "address": _socket_address(listen_host, listen_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _cluster(
                    RATE_LIMIT_CLUSTER,
                    settings.limiters,
                    http2=True,
                    health_check=_health_check(settings.health_interval_ms, limiter_check),
                ),
                _cluster(
                    UPSTREAM_CLUSTER,
                    settings.upstreams,
                    http2=False,
                    health_check=_health_check(settings.health_interval_ms, api_check),
                ),
            ],
        },
    }


def render(settings: EdgeSettings, header: str = "") -> str:
    """The bootstrap as YAML, after ``header`` (comment lines, each ending in a newline)."""
    return header + yaml.safe_dump(bootstrap(settings), sort_keys=False)
