"""The gRPC client of ``ratelimit.v1.RateLimiter``: one channel per process, decisions
coalesced into as few calls as the load allows (``api.coalescing``), and the failure mode
when no decision can be had.

The channel balances over every address ``LIMITER_ADDR`` resolves to with ``round_robin``
and retries a call that failed ``UNAVAILABLE`` (a replica died or refused the connection)
on the next replica, so losing one replica loses no request. Every call, retries included,
has the ``LIMITER_TIMEOUT_MS`` deadline. Create the client inside the running event loop
(the app's lifespan) and ``close()`` it there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from api.coalescing import CallCoalescer, RpcFailure
from api.decision import Decision, Reason
from api.errors import RateLimitMisconfigured, error_for_status
from api.outage import ErrorLog, OutageLog
from api.settings import FailureMode, LimiterSettings
from limiter_service import proto

__all__ = [
    "CONNECT_TIMEOUT_S",
    "FAIL_CLOSED_RETRY_AFTER_S",
    "LimiterClient",
    "channel_options",
]

FAIL_CLOSED_RETRY_AFTER_S = 1
MAX_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 1.0

log = logging.getLogger("api.limiter")

_FAIL_OPEN = int(Reason.FAIL_OPEN)
_FAIL_CLOSED = int(Reason.FAIL_CLOSED)


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
    """Options of the one channel to the limiter replicas."""
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


def _ceil_s(duration: Duration) -> int:
    """Whole seconds, rounded up; 0 for a zero, absent or negative duration."""
    return max(0, duration.seconds + (1 if duration.nanos > 0 else 0))


class LimiterClient:
    """Asks the limiter for decisions; answers with the failure mode when it cannot."""

    def __init__(self, settings: LimiterSettings) -> None:
        self._target = settings.limiter_addr
        self._open = settings.failure_mode is FailureMode.OPEN
        self._channel = grpc.aio.insecure_channel(settings.limiter_addr, options=channel_options())
        self._calls = CallCoalescer(
            self._channel.unary_unary(
                proto.SHOULD_ALLOW_METHOD,
                request_serializer=proto.ShouldAllowRequest.SerializeToString,
                response_deserializer=proto.ShouldAllowResponse.FromString,
            ),
            self._channel.unary_unary(
                proto.SHOULD_ALLOW_BATCH_METHOD,
                request_serializer=proto.ShouldAllowBatchRequest.SerializeToString,
                response_deserializer=proto.ShouldAllowBatchResponse.FromString,
            ),
            settings.timeout_s,
            settings.max_in_flight,
        )
        self.outages = OutageLog(settings.failure_mode.value)
        self._errors = ErrorLog()

    async def decide(self, key: str, policy: str, cost: int = 1) -> Decision:
        """Charge ``cost`` units of ``policy`` to ``key`` and say whether that fits.

        Returns within the deadline (plus scheduling noise). When the limiter cannot decide
        (unreachable, late, or its own backend down) the decision's reason is ``FAIL_OPEN``
        or ``FAIL_CLOSED``. Raises ``InvalidRateLimitKey`` when the limiter refuses ``key``
        and ``RateLimitMisconfigured`` for a server-side mistake (e.g. unknown ``policy``).
        """
        reply = await self._calls.call(proto.ShouldAllowRequest(key=key, policy=policy, cost=cost))
        if isinstance(reply, RpcFailure):
            return self._failed(reply, policy)
        reason = reply.reason
        if reason in (_FAIL_OPEN, _FAIL_CLOSED):
            self.outages.failed(f"the limiter answered {Reason(reason).name}: its backend is down")
            if reason == _FAIL_OPEN:
                return Decision(True, Reason.FAIL_OPEN, reply.policy or policy)
            retry_after_s = max(1, _ceil_s(reply.retry_after))
            return Decision(
                False, Reason.FAIL_CLOSED, reply.policy or policy, 0, 0, 0, retry_after_s
            )
        if self.outages.in_outage:
            self.outages.recovered()
        # An older limiter sends no window: 0, and the header leaves ``w`` out.
        window_s = _ceil_s(reply.window)
        if reply.allowed:
            return Decision(
                True,
                Reason.WITHIN_LIMIT,
                reply.policy,
                reply.limit,
                reply.remaining,
                _ceil_s(reply.reset_after),
                0,
                window_s,
            )
        retry_after_s = max(1, _ceil_s(reply.retry_after))
        return Decision(
            False,
            Reason.OVER_LIMIT,
            reply.policy,
            reply.limit,
            reply.remaining,
            retry_after_s,
            retry_after_s,
            window_s,
        )

    def _failed(self, failure: RpcFailure, policy: str) -> Decision:
        error = error_for_status(failure.code, failure.details, policy)
        if error is None:
            self.outages.failed(f"{failure.code.name}: {failure.details}")
            if self._open:
                return Decision(True, Reason.FAIL_OPEN, policy)
            return Decision(False, Reason.FAIL_CLOSED, policy, 0, 0, 0, FAIL_CLOSED_RETRY_AFTER_S)
        if self.outages.in_outage:
            self.outages.recovered()
        if isinstance(error, RateLimitMisconfigured):
            self._errors.error(f"rate limiting misconfigured ({error.detail}): {error.log_detail}")
        raise error

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Start connecting and wait up to ``timeout_s`` for a ready replica, so the first
        requests do not pay for the handshake; returns whether one is ready. Never raises:
        a limiter that is down at start is an outage like any other."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            log.warning(
                "rate limiter at %s not ready after %.1f s; failing %s until it is",
                self._target,
                timeout_s,
                self.outages.mode,
            )
            return False
        return True

    async def close(self) -> None:
        """Close the channel; calls still running fail (and get the failure mode)."""
        await self._channel.close()
        await self._calls.close()
