"""How pending decisions are cut into batches (no network)."""

from __future__ import annotations

import asyncio

import grpc

from api.coalescing import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    CallCoalescer,
    Outcome,
    RpcFailure,
    chunks,
)
from limiter_service import proto


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


class HeldLimiter:
    """Stands in for the channel's two callables; every call waits until released."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = asyncio.Event()

    async def single(
        self, request: proto.ShouldAllowRequest, timeout: float
    ) -> proto.ShouldAllowResponse:
        self.calls.append(1)
        await self.release.wait()
        return proto.ShouldAllowResponse(allowed=True, policy=request.policy)

    async def batch(
        self, message: proto.ShouldAllowBatchRequest, timeout: float
    ) -> proto.ShouldAllowBatchResponse:
        self.calls.append(len(message.requests))
        await self.release.wait()
        return proto.ShouldAllowBatchResponse(
            responses=[proto.ShouldAllowResponse(allowed=True) for _ in message.requests]
        )


def _request(n: int) -> proto.ShouldAllowRequest:
    return proto.ShouldAllowRequest(key=f"ip:{n}", policy="default")


async def test_requests_queue_behind_calls_in_flight_and_share_the_next() -> None:
    limiter = HeldLimiter()
    coalescer = CallCoalescer(limiter.single, limiter.batch, timeout_s=5, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.call(_request(0)))
    await asyncio.sleep(0.01)
    assert limiter.calls == [1]  # a lone request goes at once
    queued = [asyncio.ensure_future(coalescer.call(_request(n))) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    assert limiter.calls == [1]  # nothing more while the cap is reached
    limiter.release.set()
    replies = await asyncio.gather(first, *queued)
    assert limiter.calls == [1, 5]  # the five queued requests travel together
    assert all(isinstance(r, proto.ShouldAllowResponse) and r.allowed for r in replies)
    await coalescer.close()


async def test_time_in_the_queue_counts_against_the_deadline() -> None:
    limiter = HeldLimiter()
    coalescer = CallCoalescer(limiter.single, limiter.batch, timeout_s=0.05, max_in_flight=1)
    held = asyncio.ensure_future(coalescer.call(_request(0)))
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(coalescer.call(_request(1)))
    await asyncio.sleep(0.1)  # past the queued request's deadline; the first call still runs
    limiter.release.set()
    assert isinstance(await held, proto.ShouldAllowResponse)
    outcome = await late
    assert isinstance(outcome, RpcFailure)
    assert outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert limiter.calls == [1]  # the expired request was never sent
    await coalescer.close()
