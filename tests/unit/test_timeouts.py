"""patient_timeout: expires like asyncio.timeout, but not on a reply the loop already has."""

from __future__ import annotations

import asyncio
import time

import pytest

from limiter_service.timeouts import patient_timeout


async def test_expires_when_nothing_comes() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with patient_timeout(0.02):
            await asyncio.sleep(10)
    assert time.monotonic() - started < 5


async def test_returns_normally_when_in_time() -> None:
    async with patient_timeout(5):
        await asyncio.sleep(0)


async def test_a_reply_ready_in_the_same_turn_as_the_timer_wins() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()

    async def wait_for_reply() -> str:
        async with patient_timeout(0.01):
            return await reply

    waiter = asyncio.ensure_future(wait_for_reply())
    await asyncio.sleep(0)  # the waiter is now blocked on the reply
    loop.call_later(0.01, reply.set_result, "pong")  # due together with the timer
    time.sleep(0.05)  # noqa: ASYNC251 - the loop is late on purpose: both are overdue
    assert await waiter == "pong"


async def test_plain_asyncio_timeout_loses_that_race() -> None:
    """Documents why patient_timeout exists (if asyncio changes, this test tells us)."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()

    async def wait_for_reply() -> str:
        async with asyncio.timeout(0.01):
            return await reply

    waiter = asyncio.ensure_future(wait_for_reply())
    await asyncio.sleep(0)
    loop.call_later(0.01, reply.set_result, "pong")
    time.sleep(0.05)  # noqa: ASYNC251 - the loop is late on purpose
    with pytest.raises(TimeoutError):
        await waiter


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    """The caller giving up is not a timeout (nor swallowed)."""
    started = asyncio.Event()

    async def wait_long() -> None:
        async with patient_timeout(5):
            started.set()
            await asyncio.sleep(10)

    waiter = asyncio.ensure_future(wait_long())
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_leaves_no_cancellation_behind_after_it_expired() -> None:
    """After its own TimeoutError the task is not marked as cancelling (later awaits and
    later timeouts work as usual)."""
    with pytest.raises(TimeoutError):
        async with patient_timeout(0.01):
            await asyncio.sleep(10)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    async with patient_timeout(5):
        await asyncio.sleep(0)
