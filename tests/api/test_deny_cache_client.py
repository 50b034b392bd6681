"""The client's deny cache: a denial the limiter sent answers the same key and policy, for
that cost or more, without a call until its ``retry_after``; ``reset()`` drops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from prometheus_client import CollectorRegistry

from ratelimit_client import LimiterClient, LimiterSettings, Reason, SyncLimiterClient, proto
from ratelimit_client.prometheus import PrometheusClientMetrics
from ratelimit_client.settings import ConfigError

RETRY_S = 10


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Limiter(proto.RateLimiterServicer):
    """Denies ``over:*`` keys for cost >= 2 (policy ``p``, retry after 10 s), shadow-denies
    ``shadow:*`` and says ``FAIL_CLOSED`` for ``down:*``; counts the requests it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.resets: list[str] = []

    def answer(self, request: proto.ShouldAllowRequest) -> proto.ShouldAllowResponse:
        self.seen.append((request.key, request.policy, request.cost))
        R = proto.Reason
        common = {"policy": "p", "limit": 5, "window": Duration(seconds=60)}
        if request.key.startswith("over:") and request.cost >= 2 and request.key not in self.resets:
            return proto.ShouldAllowResponse(
                allowed=False,
                reason=R.REASON_OVER_LIMIT,
                remaining=1,
                retry_after=Duration(seconds=RETRY_S),
                reset_after=Duration(seconds=RETRY_S),
                **common,  # type: ignore[arg-type]
            )
        if request.key.startswith("shadow:"):
            return proto.ShouldAllowResponse(
                allowed=True,
                reason=R.REASON_SHADOW_OVER_LIMIT,
                **common,  # type: ignore[arg-type]
            )
        if request.key.startswith("down:"):
            return proto.ShouldAllowResponse(
                allowed=False, reason=R.REASON_FAIL_CLOSED, retry_after=Duration(seconds=1)
            )
        return proto.ShouldAllowResponse(
            allowed=True,
            reason=R.REASON_WITHIN_LIMIT,
            remaining=3,
            **common,  # type: ignore[arg-type]
        )

    async def ShouldAllow(
        self, request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowResponse:
        return self.answer(request)

    async def ShouldAllowBatch(
        self, request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowBatchResponse:
        return proto.ShouldAllowBatchResponse(responses=[self.answer(r) for r in request.requests])

    async def Reset(
        self, request: proto.ResetRequest, context: grpc.aio.ServicerContext
    ) -> proto.ResetResponse:
        self.resets.append(request.key)
        return proto.ResetResponse(policy="p")


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[Limiter, str]]:
    limiter = Limiter()
    server = grpc.aio.server()
    proto.add_RateLimiterServicer_to_server(limiter, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield limiter, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def settings(address: str, size: int = 100) -> LimiterSettings:
    return LimiterSettings(limiter_addr=address, timeout_ms=5000, deny_cache_size=size)


async def test_a_flood_on_a_denied_key_makes_no_calls_until_retry_after() -> None:
    metrics = PrometheusClientMetrics(CollectorRegistry())
    async with (
        serving() as (limiter, address),
        LimiterClient(settings(address), metrics=metrics) as client,
    ):
        clock = Clock()
        assert client.deny_cache is not None
        client.deny_cache.clock = clock
        first = await client.decide("over:1", "", cost=2)
        assert first.reason is Reason.OVER_LIMIT and first.retry_after_s == RETRY_S
        clock.now += 2.5
        answers = await asyncio.gather(*(client.decide("over:1", "", 3) for _ in range(50)))
        assert {a for a in answers} == {
            first._replace(retry_after_s=8, reset_s=8),
        }
        assert len(limiter.seen) == 1
        assert (await client.decide("over:1", "", 1)).allowed  # smaller: asked
        assert (await client.decide("over:1", "other", 2)).reason is Reason.OVER_LIMIT
        assert len(limiter.seen) == 3  # another policy is another entry
        clock.now += RETRY_S - 2.5
        assert not (await client.decide("over:1", "", 2)).allowed  # at T: asked again
        assert len(limiter.seen) == 4
    registry = metrics.registry
    assert registry.get_sample_value("ratelimit_client_deny_cache_answers_total") == 50
    assert (
        registry.get_sample_value("ratelimit_client_decisions_total", {"outcome": "denied"}) == 53
    )


async def test_shadow_and_failure_mode_answers_are_not_cached() -> None:
    async with serving() as (limiter, address), LimiterClient(settings(address)) as client:
        for _ in range(3):
            assert (await client.decide("shadow:1", "", 2)).allowed
            assert (await client.decide("down:1", "", 2)).reason is Reason.FAIL_CLOSED
        assert len(limiter.seen) == 6
        assert client.deny_cache is not None and len(client.deny_cache) == 0


async def test_reset_drops_the_clients_own_entry() -> None:
    async with serving() as (limiter, address), LimiterClient(settings(address)) as client:
        assert not (await client.decide("over:r", "", 2)).allowed
        assert not (await client.decide("over:r", "", 2)).allowed
        assert len(limiter.seen) == 1
        assert await client.reset("over:r", "p") == "p"  # the entry asked by key alone
        assert (await client.decide("over:r", "", 2)).allowed
        assert len(limiter.seen) == 2


async def test_size_zero_asks_every_time() -> None:
    async with serving() as (limiter, address), LimiterClient(settings(address, size=0)) as client:
        assert client.deny_cache is None
        for _ in range(3):
            assert not (await client.decide("over:1", "", 2)).allowed
        assert len(limiter.seen) == 3


async def test_the_sync_client_skips_the_call_too() -> None:
    metrics = PrometheusClientMetrics(CollectorRegistry())
    async with serving() as (limiter, address):

        def flood() -> list[bool]:
            with SyncLimiterClient(settings(address), metrics=metrics) as client:
                allowed = [client.decide("over:s", "", 2).allowed for _ in range(20)]
                assert client.reset("over:s") == "p"
                allowed.append(client.decide("over:s", "", 2).allowed)
                return allowed

        allowed = await asyncio.to_thread(flood)
        assert allowed == [False] * 20 + [True]
        assert len(limiter.seen) == 2
    assert metrics.registry.get_sample_value("ratelimit_client_deny_cache_answers_total") == 19


def test_setting() -> None:
    assert LimiterSettings().deny_cache_size == 1000
    assert LimiterSettings.from_env({"LIMITER_DENY_CACHE_SIZE": "0"}).deny_cache_size == 0
    with pytest.raises(ConfigError, match="LIMITER_DENY_CACHE_SIZE"):
        LimiterSettings.from_env({"LIMITER_DENY_CACHE_SIZE": "-1"})
