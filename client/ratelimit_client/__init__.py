"""Client library of the ``ratelimit.v1`` decision service.

``pip install ratelimit-client`` (grpcio and protobuf only; ``[fastapi]`` adds the FastAPI
integration in ``ratelimit_client.fastapi``). In two lines::

    async with LimiterClient(LimiterSettings(limiter_addr="limiter:50051")) as limiter:
        allowed = (await limiter.decide("user:42", "default")).allowed

``SyncLimiterClient`` is the same for threaded code; ``ratelimit_client.testing.FakeLimiter``
stands in for the service in tests; ``ratelimit_client.proto`` is the wire contract.
``ClientMetrics`` is the hook for an app's metrics (``ratelimit_client.prometheus`` fills
Prometheus counters through it, with the ``[prometheus]`` extra).
"""

from ratelimit_client.aio import LimiterClient
from ratelimit_client.decision import BatchItem, Decision, Reason
from ratelimit_client.errors import InvalidKey, Misconfigured, RateLimitClientError, ResetFailed
from ratelimit_client.metrics import ClientMetrics
from ratelimit_client.settings import (
    ConfigError,
    FailureMode,
    LimiterSettings,
    load_limiter_settings,
)
from ratelimit_client.sync import SyncLimiterClient

__all__ = [
    "BatchItem",
    "ClientMetrics",
    "ConfigError",
    "Decision",
    "FailureMode",
    "InvalidKey",
    "LimiterClient",
    "LimiterSettings",
    "Misconfigured",
    "RateLimitClientError",
    "Reason",
    "ResetFailed",
    "SyncLimiterClient",
    "load_limiter_settings",
]
