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
instead of on the next turn, pending calls are sent on the first turn that finds nothing
else ready to run (no other RPC's work, no reply to read), once ``window_s`` has passed, as
soon as ``FULL_ENOUGH`` hits are pending (that many already amortise a round trip), or as
soon as a call with several hits is pending (its caller batched already: the client
library's coalescer, a ``ShouldAllowBatch``, Envoy's descriptors), whichever comes first.
Only single decisions wait for company. An idle limiter sends a call at once, whoever
calls and however often; a limiter with more work than CPU finishes the work it already has
(RPCs that have arrived reach the coalescer meanwhile) before it sends, so one round trip
carries many decisions and the event loop's CPU per decision falls (fewer Redis writes and
reads, fewer wake-ups). The wait is at most ``window_s`` and never makes a call wait on an
idle loop. "Ready to run" is asyncio's own queue of callbacks (``BaseEventLoop._ready``); a
loop without one (another implementation) sends on the next turn, as with ``window_s`` 0.
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
FULL_ENOUGH = 64
"""Pending hits that already amortise a round trip: they are sent without waiting for more."""


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
        self._flush_by = 0.0
        self._metrics = metrics
        self._max_in_flight = max(1, max_in_flight)
        self._pending: list[_Waiter] = []
        self._pending_hits = 0
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        """Verdicts for ``hits``; raises ``BackendUnavailable`` like the backend does."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Verdict]] = loop.create_future()
        self._pending.append((hits, deadline, future))
        self._pending_hits += len(hits)
        if not self._scheduled and self._in_flight < self._max_in_flight:
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush on the next turn that ``_when_idle`` allows; ``window_s`` from now at the
        latest."""
        self._scheduled = True
        self._flush_by = loop.time() + self._window_s
        loop.call_soon(self._when_idle)

    def _when_idle(self) -> None:
        """Flush, unless only single hits are pending, fewer than ``FULL_ENOUGH``, other
        callbacks are ready and the window is still open: then ask again after them (a
        turn that polls for I/O without waiting)."""
        loop = asyncio.get_running_loop()
        if (
            len(self._pending) == self._pending_hits < FULL_ENOUGH
            and getattr(loop, "_ready", None)
            and loop.time() < self._flush_by
        ):
            loop.call_soon(self._when_idle)
            return
        self._flush()

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
        self._pending_hits = sum(len(waiter[0]) for waiter in live)

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
