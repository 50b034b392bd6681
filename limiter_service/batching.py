"""Coalescing: decisions asked for while the backend is busy share its next round trip.

When a call arrives and fewer than ``max_in_flight`` backend calls are running, it is sent
on the next turn of the event loop together with every other call that arrived in the same
turn; otherwise it waits and joins the batch sent as soon as a running call finishes. A
request's hits always travel together, in order, so a ``ShouldAllowBatch`` stays one round
trip, and an all-or-nothing group (its hits share a ``Hit.group`` no other call uses) stays
whole and never spans callers: merging calls concatenates their hits and nothing else. One
round trip carries at most ``MAX_HITS_PER_TRIP`` hits (Redis runs nothing else while a
script runs).

``window_s`` (``LIMITER_COALESCE_WINDOW_US``) lets a busy limiter wait a little for company:
while calls overlap (a round trip is in flight, or the last one carried several calls), a
call is sent no sooner than ``window_s`` after the previous send, with everything else that
arrived meanwhile. A lone caller, or one that waits for each answer before asking again,
never waits: its calls find the backend idle and travel alone, so they go out on the next
turn. Under load one round trip carries many decisions, and the event loop's CPU per
decision falls (fewer Redis reads and writes, fewer wake-ups). The wait a
call can get is at most ``window_s`` (plus the event loop's timer granularity, 1 ms with
epoll, when the loop has nothing else to do).
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

    def __init__(
        self,
        backend: Backend,
        max_in_flight: int,
        metrics: Metrics = NO_METRICS,
        window_s: float = 0.0,
    ) -> None:
        self._backend = backend
        self._window_s = max(0.0, window_s)
        self._last_send = float("-inf")
        self._company = False  # the last round trip carried more than one call
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
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush on the next turn; or, while calls have company (a round trip is in flight,
        or the last one carried several calls), once ``window_s`` has passed since the last
        send."""
        self._scheduled = True
        if self._in_flight or self._company:
            wait = self._last_send + self._window_s - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush)
                return
        loop.call_soon(self._flush)

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
            self._last_send = asyncio.get_running_loop().time()
            self._company = len(batch) > 1
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
                self._schedule(asyncio.get_running_loop())

    async def close(self) -> None:
        """Wait for running backend calls to finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
