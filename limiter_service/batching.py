"""Coalescing: decisions asked for while the backend is busy share its next round trip.

When a call arrives and fewer than ``max_in_flight`` backend calls are running, it is sent
on the next turn of the event loop together with every other call that arrived in the same
turn; otherwise it waits and joins the batch sent as soon as a running call finishes. At low
load this adds no latency; at high load one round trip carries many decisions, at most
``MAX_HITS_PER_TRIP`` (Redis runs nothing else while a script runs). A request's
hits always travel together, in order, so a ``ShouldAllowBatch`` stays one round trip, and
an all-or-nothing group (its hits share a ``Hit.group`` no other call uses) stays whole and
never spans callers: merging calls concatenates their hits and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from limiter_service.backends.base import Backend
from limiter_service.decision import Hit, Verdict
from limiter_service.metrics import NO_METRICS, Metrics

_Waiter = tuple[Sequence[Hit], float, "asyncio.Future[list[Verdict]]"]
MAX_HITS_PER_TRIP = 1000
"""Keeps one script run short (Redis runs nothing else meanwhile): about 10-20 ms."""


class Coalescer:
    """Wraps a backend with the same ``decide`` contract, merging concurrent calls;
    ``metrics`` hears of each backend call (how long, how many decisions, whether it
    answered)."""

    def __init__(self, backend: Backend, max_in_flight: int, metrics: Metrics = NO_METRICS) -> None:
        self._backend = backend
        self._metrics = metrics
        self._max_in_flight = max(1, max_in_flight)
        self._pending: list[_Waiter] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        """Verdicts for ``hits``; raises ``BackendUnavailable`` like the backend does."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Verdict]] = loop.create_future()
        self._pending.append((hits, deadline, future))
        if not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Send what is pending, at most ``MAX_HITS_PER_TRIP`` hits per round trip (one
        request always travels whole), while round-trip slots are free."""
        self._scheduled = False
        live = [waiter for waiter in self._pending if not waiter[2].done()]
        while live and self._in_flight < self._max_in_flight:
            batch: list[_Waiter] = []
            size = 0
            while live and (not batch or size + len(live[0][0]) <= MAX_HITS_PER_TRIP):
                waiter = live.pop(0)
                batch.append(waiter)
                size += len(waiter[0])
            self._in_flight += 1
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._pending = live

    async def _send(self, batch: list[_Waiter]) -> None:
        hits = [hit for waiter in batch for hit in waiter[0]]
        deadline = max(waiter[1] for waiter in batch)
        started = time.perf_counter()
        try:
            verdicts = await self._backend.decide(hits, deadline)
        except Exception as exc:
            self._metrics.round_trip(time.perf_counter() - started, len(hits), False)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            self._metrics.round_trip(time.perf_counter() - started, len(hits), True)
            start = 0
            for waiter_hits, _, future in batch:
                end = start + len(waiter_hits)
                if not future.done():
                    future.set_result(verdicts[start:end])
                start = end
        finally:
            self._in_flight -= 1
            if self._pending and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def close(self) -> None:
        """Wait for running backend calls to finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
