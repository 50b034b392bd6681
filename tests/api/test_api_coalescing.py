"""How pending decisions are cut into batches (no network)."""

from __future__ import annotations

import asyncio

from api.coalescing import MAX_BATCH_BYTES, MAX_BATCH_ITEMS, Outcome, chunks
from limiter_service import proto


def _waiters(keys: list[str]) -> list[tuple[proto.ShouldAllowRequest, asyncio.Future[Outcome]]]:
    loop = asyncio.get_running_loop()
    return [
        (proto.ShouldAllowRequest(key=key, policy="default"), loop.create_future()) for key in keys
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
