"""Accounting for answers given by the failure mode instead of the backend.

Every fallback is counted. The log gets one WARNING when an outage starts (with the cause),
one summary per second while it lasts (how many fallbacks, by mode), and one INFO line when
the backend answers again, so an outage at thousands of requests per second stays readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("limiter_service.fallback")


class FallbackLog:
    """Counts fallbacks and logs them per outage rather than per request."""

    def __init__(self, mode: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._mode = mode
        self._clock = clock
        self.total = 0
        #: ``clock()`` of the latest fallback (``None``: none yet); health reads it.
        self.last_at: float | None = None
        self._in_outage = False
        self._unreported = 0
        self._outage_count = 0
        self._last_report = 0.0

    def record(self, count: int, cause: str) -> None:
        """``count`` decisions were answered by the failure mode because of ``cause``."""
        self.total += count
        self._outage_count += count
        now = self.last_at = self._clock()
        if not self._in_outage:
            self._in_outage = True
            self._last_report = now
            log.warning(
                "backend unavailable, answering fail-%s: %s (%d decision(s))",
                self._mode,
                cause,
                count,
            )
            return
        self._unreported += count
        if now - self._last_report >= 1.0:
            log.warning(
                "still answering fail-%s: %d decision(s) in the last %.1fs; last cause: %s",
                self._mode,
                self._unreported,
                now - self._last_report,
                cause,
            )
            self._unreported = 0
            self._last_report = now

    def recovered(self) -> None:
        """The backend answered; closes the current outage, if any."""
        if self._in_outage:
            log.info(
                "backend answering again after %d fail-%s decision(s)",
                self._outage_count,
                self._mode,
            )
            self._in_outage = False
            self._unreported = 0
            self._outage_count = 0
