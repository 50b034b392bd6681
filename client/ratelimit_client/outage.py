"""Logging failures per outage, not per request.

At thousands of requests per second a per-request line would bury the cause. ``OutageLog``
writes one WARNING when decisions start failing (with the cause), one summary per
``summary_every_s`` while it lasts, and one INFO line when the limiter has answered again
for ``quiet_s``.
``ErrorLog`` writes each distinct server-side error at most once per ``every_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["ErrorLog", "OutageLog"]

log = logging.getLogger("ratelimit_client")


class OutageLog:
    """Counts requests answered by the failure mode and logs them per outage.

    An outage lasts from the first failure until a decision succeeds at least ``quiet_s``
    after the last failure, so a limiter flapping under overload is one outage, not a pair
    of lines per blip. The recovery line is written by the first success after that.
    """

    def __init__(
        self,
        mode: str,
        *,
        summary_every_s: float = 10.0,
        quiet_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._summary_every_s = summary_every_s
        self._quiet_s = quiet_s
        self._clock = clock
        self.in_outage = False
        self.total = 0
        self._count = 0
        self._unreported = 0
        self._started = 0.0
        self._last_report = 0.0
        self._last_failure = 0.0

    def failed(self, cause: str) -> None:
        """One request got no decision because of ``cause``."""
        self.total += 1
        self._count += 1
        now = self._last_failure = self._clock()
        if not self.in_outage:
            self.in_outage = True
            self._started = self._last_report = now
            log.warning("rate limiter unavailable, failing %s: %s", self.mode, cause)
            return
        self._unreported += 1
        if now - self._last_report >= self._summary_every_s:
            log.warning(
                "rate limiter still unavailable, failing %s: %d request(s) in the last %.0f s; "
                "last cause: %s",
                self.mode,
                self._unreported,
                now - self._last_report,
                cause,
            )
            self._unreported = 0
            self._last_report = now

    def recovered(self) -> None:
        """The limiter decided; ends the outage if the last failure is ``quiet_s`` old."""
        if not self.in_outage:
            return
        now = self._clock()
        if now - self._last_failure < self._quiet_s:
            return
        log.info(
            "rate limiter answering again; the outage lasted %.1f s and %d request(s) failed %s",
            self._last_failure - self._started,
            self._count,
            self.mode,
        )
        self.in_outage = False
        self._count = 0
        self._unreported = 0


class ErrorLog:
    """Logs each distinct message at ERROR at most once per ``every_s`` seconds."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def error(self, message: str) -> bool:
        """Log ``message`` unless it was logged less than ``every_s`` ago; returns whether
        it was logged."""
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self._every_s:
            return False
        if len(self._last) >= 1024:
            self._last.clear()
        self._last[message] = now
        log.error("%s", message)
        return True
