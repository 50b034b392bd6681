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
    """Like ``asyncio.timeout(delay_s)``, but lets replies already received be read first."""

    __slots__ = ("_delay_s", "_handle", "_loop", "_timeout")

    def __init__(self, delay_s: float) -> None:
        self._delay_s = max(delay_s, 0.0)
        self._loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(None)
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()
        self._handle = self._loop.call_at(self._loop.time() + self._delay_s, self._expire)

    def _expire(self) -> None:
        # Wake-ups queued in this turn run on the next one; cancel only after them.
        self._loop.call_soon(self._expire_now)

    def _expire_now(self) -> None:
        if self._handle is not None:  # still inside the block
            self._timeout.reschedule(self._loop.time())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        await self._timeout.__aexit__(exc_type, exc, tb)
        return None
