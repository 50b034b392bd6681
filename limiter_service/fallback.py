"""Accounting for answers given by the failure mode instead of the backend.

Every fallback is counted. The log gets one WARNING when an outage starts (with the cause),
one summary per second while it lasts (how many fallbacks), and one INFO line when the
backend answers again, so an outage at thousands of requests per second stays readable.
The episode logic is the client library's ``Episodes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ratelimit_client.outage import Episodes

__all__ = ["FallbackLog"]

log = logging.getLogger("limiter_service.fallback")


class FallbackLog(Episodes):
    """Decisions answered by failure mode ``mode``: ``record`` per failed round trip,
    ``recovered`` per one that worked. ``total_weight`` counts decisions, ``last_at``
    is the latest fallback's ``clock()``."""

    def __init__(self, mode: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(
            log,
            started=(
                f"backend unavailable, answering fail-{mode}: {{detail}} ({{weight}} decision(s))"
            ),
            ongoing=(
                f"still answering fail-{mode}: {{weight}} decision(s) in the last "
                "{seconds:.1f}s; last cause: {detail}"
            ),
            ended=f"backend answering again after {{weight}} fail-{mode} decision(s)",
            summary_every_s=1.0,
            quiet_s=0.0,
            clock=clock,
        )

    def record(self, count: int, cause: str) -> None:
        """``count`` decisions were answered by the failure mode because of ``cause``."""
        self.event(cause, count)

    def recovered(self) -> None:
        """The backend answered; closes the current outage, if any."""
        self.ok()
