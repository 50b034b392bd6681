"""``LimiterClient`` against a real limiter process: concurrent decisions share batches,
keep their order, carry the policy's window, and one bad request in a batch spoils nothing
for the others. Windows the shared limiter does not have come from an in-process stand-in
(``stand_in``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from google.protobuf.duration_pb2 import Duration

from devstack import free_port
from ratelimit_client import (
    Decision,
    FailureMode,
    InvalidKey,
    LimiterClient,
    LimiterSettings,
    Misconfigured,
    Reason,
    proto,
)
from ratelimit_client.fastapi.headers import RATELIMIT_POLICY, HeaderCache
from tests.api.api_stack import LIMIT, RELAXED_TIMEOUT_MS, WINDOW_S, SharedStack
from tests.api.stand_in import serve

pytestmark = pytest.mark.integration


def _client(
    address: str, timeout_ms: int = RELAXED_TIMEOUT_MS, mode: FailureMode = FailureMode.OPEN
) -> LimiterClient:
    return LimiterClient(
        LimiterSettings(limiter_addr=address, timeout_ms=timeout_ms, failure_mode=mode)
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
    assert {d.window_s for d in decisions} == {WINDOW_S}


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
    assert isinstance(oversized, InvalidKey)
    assert oversized.reason == "key is 1000 bytes; the maximum is 512"
    assert isinstance(unknown, Misconfigured)
    assert unknown.detail == "rate-limit policy 'no-such-policy' does not exist"
    assert isinstance(last, Decision) and last.remaining == LIMIT - 1


@pytest.mark.parametrize(
    ("mode", "allowed"), [(FailureMode.OPEN, True), (FailureMode.CLOSED, False)]
)
async def test_unreachable_limiter_answers_with_the_failure_mode(
    mode: FailureMode, allowed: bool
) -> None:
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


# What the stand-in reports as the window, by request key.
REPORTED_WINDOWS = {
    "zero": Duration(),
    "90s": Duration(seconds=90),
    "1h": Duration(seconds=3600),
    "1.5s": Duration(seconds=1, nanos=500_000_000),
    "250ms": Duration(nanos=250_000_000),
}


def _reported(request: proto.ShouldAllowRequest) -> proto.ShouldAllowResponse:
    allowed = request.policy != "over"
    return proto.ShouldAllowResponse(
        allowed=allowed,
        limit=10,
        remaining=9 if allowed else 0,
        retry_after=Duration() if allowed else Duration(seconds=3),
        policy=request.policy,
        reason=proto.Reason.REASON_WITHIN_LIMIT if allowed else proto.Reason.REASON_OVER_LIMIT,
        window=REPORTED_WINDOWS[request.key],
    )


@pytest.fixture
async def stand_in() -> AsyncIterator[str]:
    """The address of an in-process ``ratelimit.v1`` server answering with ``_reported``."""
    async with serve(_reported) as address:
        yield address


@pytest.mark.parametrize(
    ("key", "window_s", "policy_header"),
    [
        ("zero", 0, '"under";q=10'),
        ("90s", 90, '"under";q=10;w=90'),
        ("1h", 3600, '"under";q=10;w=3600'),
        ("1.5s", 2, '"under";q=10;w=2'),
        ("250ms", 1, '"under";q=10;w=1'),
    ],
)
async def test_window_is_whole_seconds_rounded_up_and_left_out_when_zero(
    stand_in: str, key: str, window_s: int, policy_header: str
) -> None:
    client = _client(stand_in)
    try:
        allowed = await client.decide(key, "under")
        denied = await client.decide(key, "over")
    finally:
        await client.close()
    assert (allowed.reason, denied.reason) == (Reason.WITHIN_LIMIT, Reason.OVER_LIMIT)
    assert allowed.window_s == denied.window_s == window_s
    assert HeaderCache().as_dict(allowed)[RATELIMIT_POLICY] == policy_header
