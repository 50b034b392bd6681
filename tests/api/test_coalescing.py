"""How pending decisions are cut into batches and when they are sent (no network; the
deadline clock is injected)."""

from __future__ import annotations

import asyncio

import grpc

from ratelimit_client import proto
from ratelimit_client.coalescing import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    CallCoalescer,
    Outcome,
    chunks,
)
from ratelimit_client.errors import RpcFailure


def _waiters(
    keys: list[str],
) -> list[tuple[proto.ShouldAllowRequest, asyncio.Future[Outcome], float]]:
    loop = asyncio.get_running_loop()
    return [
        (proto.ShouldAllowRequest(key=key, policy="default"), loop.create_future(), 0.0)
        for key in keys
    ]


async def test_small_requests_share_one_batch_in_order() -> None:
    waiters = _waiters([f"ip:{n}" for n in range(10)])
    assert chunks(waiters) == [waiters]


async def test_batches_are_capped_by_count() -> None:
    waiters = _waiters([f"ip:{n}" for n in range(MAX_BATCH_ITEMS * 2 + 1)])
    batches = chunks(waiters)
    assert [len(b) for b in batches] == [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS, 1]
    assert [w for b in batches for w in b] == waiters


async def test_batches_are_capped_by_size_and_a_huge_item_travels_alone() -> None:
    big = "k" * (MAX_BATCH_BYTES // 3)
    waiters = _waiters([big, big, big, "x" * MAX_BATCH_BYTES, "ip:1"])
    assert [len(b) for b in chunks(waiters)] == [2, 1, 1, 1]


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HeldLimiter:
    """Stands in for the channel's two callables; every call waits until released.

    ``calls`` holds each call's size (1 for ``ShouldAllow``), in the order they arrived;
    ``arrived`` is set by the first arrival, so a test can wait for it instead of sleeping.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.groups: list[list[str]] = []  # the keys of each all-or-nothing call
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def _arrive(self, size: int) -> None:
        self.calls.append(size)
        self.arrived.set()
        await self.release.wait()

    async def single(
        self, request: proto.ShouldAllowRequest, timeout: float
    ) -> proto.ShouldAllowResponse:
        await self._arrive(1)
        return proto.ShouldAllowResponse(allowed=True, policy=request.policy)

    async def batch(
        self, message: proto.ShouldAllowBatchRequest, timeout: float
    ) -> proto.ShouldAllowBatchResponse:
        if message.all_or_nothing:
            self.groups.append([request.key for request in message.requests])
        await self._arrive(len(message.requests))
        return proto.ShouldAllowBatchResponse(
            responses=[proto.ShouldAllowResponse(allowed=True) for _ in message.requests]
        )


def _request(n: int) -> proto.ShouldAllowRequest:
    return proto.ShouldAllowRequest(key=f"ip:{n}", policy="default")


async def _run_ready_callbacks() -> None:
    """Let every task and callback that is ready now run, and what they schedule in turn
    (a few event-loop turns; no time passes on the injected clock)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_queue_behind_calls_in_flight_and_share_the_next() -> None:
    limiter = HeldLimiter()
    coalescer = CallCoalescer(
        limiter.single, limiter.batch, timeout_s=5, max_in_flight=1, clock=Clock()
    )
    first = asyncio.ensure_future(coalescer.call(_request(0)))
    await limiter.arrived.wait()
    assert limiter.calls == [1]  # a lone request goes at once
    queued = [asyncio.ensure_future(coalescer.call(_request(n))) for n in range(1, 6)]
    await _run_ready_callbacks()
    assert limiter.calls == [1]  # nothing more while the cap is reached
    assert not any(future.done() for future in queued)
    limiter.release.set()
    replies = await asyncio.gather(first, *queued)
    assert limiter.calls == [1, 5]  # the five queued requests travel together
    assert all(isinstance(r, proto.ShouldAllowResponse) and r.allowed for r in replies)
    await coalescer.close()


async def test_time_in_the_queue_counts_against_the_deadline() -> None:
    limiter = HeldLimiter()
    clock = Clock()
    coalescer = CallCoalescer(
        limiter.single, limiter.batch, timeout_s=0.05, max_in_flight=1, clock=clock
    )
    held = asyncio.ensure_future(coalescer.call(_request(0)))
    await limiter.arrived.wait()
    clock.now += 0.01
    late = asyncio.ensure_future(coalescer.call(_request(1)))
    await _run_ready_callbacks()
    clock.now += 0.1  # past the queued request's deadline; the first call still runs
    limiter.release.set()
    assert isinstance(await held, proto.ShouldAllowResponse)
    outcome = await late
    assert isinstance(outcome, RpcFailure)
    assert outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert limiter.calls == [1]  # the expired request was never sent
    await coalescer.close()


async def test_an_all_or_nothing_batch_is_never_merged_with_others() -> None:
    limiter = HeldLimiter()
    coalescer = CallCoalescer(
        limiter.single, limiter.batch, timeout_s=5, max_in_flight=1, clock=Clock()
    )
    first = asyncio.ensure_future(coalescer.call(_request(0)))
    await limiter.arrived.wait()
    queued = [asyncio.ensure_future(coalescer.call(_request(n))) for n in range(1, 4)]
    group = asyncio.ensure_future(coalescer.call_group([_request(10), _request(11)]))
    await _run_ready_callbacks()
    # The group went at once, alone; the queued requests still wait for room.
    assert limiter.calls == [1, 2]
    assert limiter.groups == [["ip:10", "ip:11"]]
    assert not any(future.done() for future in queued)
    limiter.release.set()
    replies = await asyncio.gather(first, *queued)
    assert len(await group) == 2
    assert limiter.calls == [1, 2, 3]
    assert limiter.groups == [["ip:10", "ip:11"]]
    assert all(isinstance(r, proto.ShouldAllowResponse) for r in replies)
    await coalescer.close()
