"""``LimiterClient`` against a real limiter process: concurrent decisions share batches,
keep their order, and one bad request in a batch spoils nothing for the others."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.decision import Decision, Reason
from api.errors import InvalidRateLimitKey, RateLimitMisconfigured
from api.limiter_client import LimiterClient
from api.settings import LimiterSettings
from devstack import free_port
from tests.api.api_stack import LIMIT, RELAXED_TIMEOUT_MS, SharedStack

pytestmark = pytest.mark.integration


def _client(
    address: str, timeout_ms: int = RELAXED_TIMEOUT_MS, mode: str = "open"
) -> LimiterClient:
    return LimiterClient(
        LimiterSettings(
            LIMITER_ADDR=address, LIMITER_TIMEOUT_MS=timeout_ms, LIMITER_FAILURE_MODE=mode
        )
    )


async def test_concurrent_decisions_keep_their_order(shared_stack: SharedStack) -> None:
    client = _client(shared_stack.limiter.address)
    try:
        await client.connect()
        decisions = await asyncio.gather(
            *(client.decide("test:order", "default") for _ in range(LIMIT + 2))
        )
    finally:
        await client.close()
    assert [d.remaining for d in decisions[:LIMIT]] == list(range(LIMIT - 1, -1, -1))
    assert [d.reason for d in decisions] == [Reason.WITHIN_LIMIT] * LIMIT + [Reason.OVER_LIMIT] * 2
    assert all(d.retry_after_s >= 1 and d.reset_s == d.retry_after_s for d in decisions[LIMIT:])


async def test_one_bad_request_does_not_spoil_its_batch(shared_stack: SharedStack) -> None:
    client = _client(shared_stack.limiter.address)
    try:
        await client.connect()
        outcomes = await asyncio.gather(
            client.decide("test:batch-a", "default"),
            client.decide("k" * 1000, "default"),
            client.decide("test:batch-b", "no-such-policy"),
            client.decide("test:batch-c", "default"),
            return_exceptions=True,
        )
    finally:
        await client.close()
    first, oversized, unknown, last = outcomes
    assert isinstance(first, Decision) and first.remaining == LIMIT - 1
    assert isinstance(oversized, InvalidRateLimitKey)
    assert isinstance(unknown, RateLimitMisconfigured)
    assert isinstance(last, Decision) and last.remaining == LIMIT - 1


@pytest.mark.parametrize(("mode", "allowed"), [("open", True), ("closed", False)])
async def test_unreachable_limiter_answers_with_the_failure_mode(mode: str, allowed: bool) -> None:
    client = _client(f"127.0.0.1:{free_port()}", timeout_ms=50, mode=mode)
    try:
        started = time.perf_counter()
        decisions = await asyncio.gather(*(client.decide(f"test:{n}", "default") for n in range(5)))
        elapsed_s = time.perf_counter() - started
    finally:
        await client.close()
    expected = Reason.FAIL_OPEN if allowed else Reason.FAIL_CLOSED
    assert [(d.allowed, d.reason) for d in decisions] == [(allowed, expected)] * 5
    assert elapsed_s < 0.05 + 0.5
    assert client.outages.total == 5
