"""The channel to the limiter replicas, shared by the asyncio and the sync client.

The channel balances over every address ``LIMITER_ADDR`` resolves to with ``round_robin``
and retries a call that failed ``UNAVAILABLE`` (a replica died or refused the connection)
on the next replica, so losing one replica loses no request.
"""

from __future__ import annotations

import json
from typing import Any

from ratelimit_client import proto

__all__ = ["MAX_ATTEMPTS", "channel_options", "service_config"]

MAX_ATTEMPTS = 3


def service_config() -> dict[str, Any]:
    """round_robin over all resolved addresses; ``UNAVAILABLE`` retried with a short backoff
    (a refused connection fails in microseconds, so three attempts fit any deadline)."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": proto.SERVICE_NAME}],
                "retryPolicy": {
                    "maxAttempts": MAX_ATTEMPTS,
                    "initialBackoff": "0.002s",
                    "maxBackoff": "0.01s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }


def channel_options() -> list[tuple[str, Any]]:
    """Options of the channel to the limiter replicas."""
    return [
        ("grpc.service_config", json.dumps(service_config())),
        # Our config, not one a DNS TXT record might supply.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.enable_retries", 1),
        # Find a replica that vanished without closing its connections (host lost,
        # network cut); pings only while calls are active, so an idle client never
        # trips the server's ping policy.
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # A restarted replica rejoins the rotation within a second.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1_000),
    ]
