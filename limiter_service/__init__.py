"""A gRPC rate-limit decision service: ``ratelimit.v1.RateLimiter`` on Redis (Sentinel).

Layers, each in its own module: ``settings`` (env) -> ``policies`` (what to limit) ->
``limiter`` (validation, failure mode) -> ``batching`` (coalescing) -> ``backends``
(memory, redis, sentinel; Lua in ``backends/lua``) ; ``grpc_service`` and ``health`` are the
gRPC edge, ``server`` wires them together. ``metrics`` is what every layer reports to
(Prometheus, or nothing).
"""

from limiter_service.decision import Algorithm, Decision, Policy, Reason
from limiter_service.errors import (
    BackendUnavailable,
    ConfigError,
    InvalidRequest,
    LimiterError,
    UnknownPolicy,
)
from limiter_service.limiter import Limiter, Request

__all__ = [
    "Algorithm",
    "BackendUnavailable",
    "ConfigError",
    "Decision",
    "InvalidRequest",
    "Limiter",
    "LimiterError",
    "Policy",
    "Reason",
    "Request",
    "UnknownPolicy",
]
