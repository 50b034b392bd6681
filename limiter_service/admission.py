"""Admission control: how much work may be in flight, in the whole process and per peer.

Work is counted in calls and in *decisions*: a call carries as many decisions as requests
(a ``ShouldAllow`` 1, a ``ShouldAllowBatch`` of 1000 1000, an empty batch 1). Four limits
hold at every instant (``AdmissionLimits``):

- ``max_rpcs`` / ``max_peer_rpcs``: calls in flight, admitted or waiting for room, in the
  process / from one peer address;
- ``max_decisions`` / ``max_peer_decisions``: decisions admitted and not yet answered
  (being validated, queued in the coalescer for a round trip, or at Redis), in the process
  / from one peer address. The process-wide limit bounds the coalescer's queue, and so how
  long an admitted decision can wait for Redis; the per-peer one keeps a client flooding
  big batches to its share, so it cannot starve the others.

A call beyond a call limit is shed at once. A call that fits them but whose decisions do not
fit waits for room, in its peer's queue, for at most ``wait_s`` (the caller chooses it, well
within the call's deadline); then it is shed. Waiting costs no CPU, so a client that keeps
more calls in flight than its share is slowed down to its share instead of spinning on
refusals. Room is handed to waiting peers in turn (round robin); within a peer, in order.
A waiting batch may be overtaken by smaller calls that fit.

A shed call raises ``Overloaded`` (the gRPC edge answers ``RESOURCE_EXHAUSTED``,
``ErrorInfo`` ``OVERLOADED``) before any validation or backend work. Every shed call is
counted and logged once per episode (``ShedLog``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import NamedTuple

from limiter_service.errors import Overloaded
from ratelimit_client.outage import Episodes

__all__ = ["Admission", "AdmissionLimits", "ShedLog"]

log = logging.getLogger("limiter_service.admission")


class AdmissionLimits(NamedTuple):
    """The most work in flight at once; see the module docstring."""

    max_rpcs: int = 2000
    max_peer_rpcs: int = 500
    max_decisions: int = 4000
    max_peer_decisions: int = 1000


class ShedLog(Episodes):
    """Counts shed calls (``rpcs``, the ``decisions`` they carried, ``by_limit``) and logs
    them per episode rather than per call: one WARNING when shedding starts (with the
    cause), one summary per second while it goes on, and one INFO line at the first
    admission after a second without shedding."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(
            log,
            started="overloaded, shedding calls (RESOURCE_EXHAUSTED): {detail}",
            ongoing="still shedding: {events} call(s) in the last {seconds:.1f}s; last: {detail}",
            ended="no longer shedding, after {events} call(s) ({weight} decision(s)) shed",
            summary_every_s=1.0,
            quiet_s=1.0,
            clock=clock,
        )
        self.by_limit: collections.Counter[str] = collections.Counter()

    @property
    def rpcs(self) -> int:
        """Calls shed so far."""
        return self.total

    @property
    def decisions(self) -> int:
        """Decisions those calls carried."""
        return self.total_weight

    def record(self, error: Overloaded, decisions: int) -> None:
        """A call of ``decisions`` decisions was shed with ``error``."""
        self.by_limit[error.limit] += 1
        self.event(str(error), decisions)

    def admitted(self) -> None:
        """A call was admitted; ends the episode if nothing was shed for a second."""
        self.ok()


class _Waiter:
    __slots__ = ("future", "granted", "peer", "timer", "units")

    def __init__(self, peer: str, units: int, future: asyncio.Future[None]) -> None:
        self.peer = peer
        self.units = units
        self.future = future
        self.granted = False
        self.timer: asyncio.TimerHandle | None = None


class Admission:
    """Admits calls within ``limits``; one instance per process, used from one event loop
    (not thread-safe). ``rpcs``/``decisions`` are what is in flight now; ``shed`` counts
    what was refused."""

    def __init__(
        self, limits: AdmissionLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or AdmissionLimits()
        self.shed = ShedLog(clock)
        self.rpcs = 0
        self.decisions = 0
        self._peer_rpcs: dict[str, int] = {}
        self._peer_decisions: dict[str, int] = {}
        # Peers with calls waiting for room, in the order they are served.
        self._queues: dict[str, collections.deque[_Waiter]] = {}

    def in_flight(self, peer: str) -> tuple[int, int]:
        """Calls (admitted or waiting) and admitted decisions in flight from ``peer``."""
        return self._peer_rpcs.get(peer, 0), self._peer_decisions.get(peer, 0)

    def admit(self, peer: str, decisions: int, wait_s: float) -> AbstractAsyncContextManager[None]:
        """Hold room for a call from ``peer`` (an address: its calls share its limits)
        carrying ``decisions`` decisions until the block ends, waiting for it at most
        ``wait_s`` seconds. Raises ``Overloaded`` (counted and logged) when there is none."""
        return _Admitted(self, peer, max(decisions, 1), wait_s)

    async def _enter(self, peer: str, units: int, wait_s: float) -> None:
        limits = self.limits
        peer_rpcs = self._peer_rpcs.get(peer, 0)
        if peer_rpcs >= limits.max_peer_rpcs:
            self._refuse(
                f"{peer_rpcs} call(s) in flight from {peer}, the most is {limits.max_peer_rpcs}",
                "peer_rpcs",
                units,
            )
        if self.rpcs >= limits.max_rpcs:
            self._refuse(
                f"{self.rpcs} call(s) in flight, the most is {limits.max_rpcs}", "rpcs", units
            )
        self.rpcs += 1
        self._peer_rpcs[peer] = peer_rpcs + 1
        try:
            if peer in self._queues or not self._fits(peer, units):
                await self._wait(peer, units, wait_s)
            else:
                self._take(peer, units)
            self.shed.admitted()
        except BaseException:
            self._leave(peer)
            raise

    def _exit(self, peer: str, units: int) -> None:
        try:
            self._give_back(peer, units)
        finally:
            self._leave(peer)

    def _leave(self, peer: str) -> None:
        self.rpcs -= 1
        _decrement(self._peer_rpcs, peer, 1)

    def _fits(self, peer: str, units: int) -> bool:
        return (
            self._peer_decisions.get(peer, 0) + units <= self.limits.max_peer_decisions
            and self.decisions + units <= self.limits.max_decisions
        )

    def _take(self, peer: str, units: int) -> None:
        self.decisions += units
        self._peer_decisions[peer] = self._peer_decisions.get(peer, 0) + units

    def _give_back(self, peer: str, units: int) -> None:
        self.decisions -= units
        _decrement(self._peer_decisions, peer, units)
        if self._queues:
            self._serve_waiting()

    async def _wait(self, peer: str, units: int, wait_s: float) -> None:
        limits = self.limits
        if wait_s <= 0 or units > min(limits.max_peer_decisions, limits.max_decisions):
            self._refuse(*self._shortage(peer, units), units)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(peer, units, loop.create_future())
        self._queues.setdefault(peer, collections.deque()).append(waiter)
        waiter.timer = loop.call_later(wait_s, self._expire, waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.granted:  # room was handed over just before the caller gave up
                self._give_back(peer, units)
            else:
                self._unqueue(waiter)
            raise
        except Overloaded as exc:
            self.shed.record(exc, units)
            raise

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.granted or waiter.future.done():
            return
        self._unqueue(waiter)
        reason, limit = self._shortage(waiter.peer, waiter.units)
        message = f"overloaded: {reason}; no room within the wait allowed; retry later"
        waiter.future.set_exception(Overloaded(message, limit))

    def _unqueue(self, waiter: _Waiter) -> None:
        _cancel_timer(waiter)
        queue = self._queues.get(waiter.peer)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.peer]
            else:  # the calls it held up may fit now
                self._serve_waiting()

    def _serve_waiting(self) -> None:
        """Hand room to waiting calls: one call of each peer per round (then that peer goes
        to the back of the line), a peer's calls in order, until nothing more fits."""
        progress = True
        while progress and self._queues:
            progress = False
            for peer, queue in list(self._queues.items()):
                while queue and queue[0].future.done():  # its caller gave up
                    _cancel_timer(queue.popleft())
                if queue and self._fits(peer, queue[0].units):
                    waiter = queue.popleft()
                    _cancel_timer(waiter)
                    self._take(peer, waiter.units)
                    waiter.granted = True
                    waiter.future.set_result(None)
                    progress = True
                    del self._queues[peer]
                    if queue:
                        self._queues[peer] = queue
                elif not queue:
                    del self._queues[peer]

    def _shortage(self, peer: str, units: int) -> tuple[str, str]:
        """Why ``units`` more decisions from ``peer`` do not fit, and the limit's name."""
        from_peer = self._peer_decisions.get(peer, 0)
        if from_peer + units > self.limits.max_peer_decisions:
            return (
                f"{from_peer} decision(s) in flight from {peer}; {units} more would exceed "
                f"{self.limits.max_peer_decisions}",
                "peer_decisions",
            )
        return (
            f"{self.decisions} decision(s) in flight; {units} more would exceed "
            f"{self.limits.max_decisions}",
            "decisions",
        )

    def _refuse(self, reason: str, limit: str, units: int) -> None:
        error = Overloaded(f"overloaded: {reason}; retry later", limit)
        self.shed.record(error, units)
        raise error


class _Admitted:
    """``Admission.admit``'s block: room taken on entry (which may wait, or raise),
    given back on exit. A plain class, not a generator-based context manager: every call
    enters one."""

    __slots__ = ("_admission", "_peer", "_units", "_wait_s")

    def __init__(self, admission: Admission, peer: str, units: int, wait_s: float) -> None:
        self._admission = admission
        self._peer = peer
        self._units = units
        self._wait_s = wait_s

    async def __aenter__(self) -> None:
        await self._admission._enter(self._peer, self._units, self._wait_s)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._admission._exit(self._peer, self._units)


def _cancel_timer(waiter: _Waiter) -> None:
    if waiter.timer is not None:
        waiter.timer.cancel()


def _decrement(counts: dict[str, int], key: str, by: int) -> None:
    left = counts[key] - by
    if left:
        counts[key] = left
    else:
        del counts[key]
