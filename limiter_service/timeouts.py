"""Timeouts that measure the other side's silence, not our own event loop's backlog.

Under load the event loop can be late: when a timer and the reply it guards become ready in
the same loop turn, ``asyncio.timeout`` cancels the waiting task before it could read a reply
that has already arrived. Throwing such a reply away costs a reconnect (redis-py drops a
connection whose command was cancelled), a retry that may count the decision twice, or a
needless failure-mode answer. ``patient_timeout`` expires a couple of loop turns after its delay, so
whatever the loop had already received is delivered first; it still raises ``TimeoutError``
like ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class patient_timeout:
    """Like ``asyncio.timeout(delay_s)``, but lets replies already received be read first.

    Every decision enters two of these, so it cancels the task itself, as
    ``asyncio.timeout`` does, instead of wrapping one: a timer and a few attributes, no
    second timeout object. A cancellation from elsewhere (the caller gave up) stays a
    ``CancelledError``; only its own becomes ``TimeoutError``."""

    __slots__ = ("_cancelling", "_delay_s", "_expired", "_handle", "_loop", "_task")

    def __init__(self, delay_s: float) -> None:
        self._delay_s = max(delay_s, 0.0)
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.Handle | None = None
        self._cancelling = 0
        self._expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("patient_timeout should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._loop.call_at(self._loop.time() + self._delay_s, self._expire)

    def _expire(self) -> None:
        # Wake-ups queued in this turn (a reply's, queued after this timer's) run on the
        # next one; cancel only after them, two hops on.
        self._handle = self._loop.call_soon(self._expire_soon)

    def _expire_soon(self) -> None:
        self._handle = self._loop.call_soon(self._expire_now)

    def _expire_now(self) -> None:
        self._handle = None
        if self._task is not None:  # still inside the block
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task, self._task = self._task, None
        if (
            self._expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
        return None
