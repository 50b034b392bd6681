"""Logging failures per outage, not per request.

At thousands of requests per second a per-request line would bury the cause. ``Episodes``
writes one WARNING when events start (with the cause), one summary per ``summary_every_s``
while they go on, and one INFO line once things have worked for ``quiet_s``; ``OutageLog``
is that for the client's failure-mode answers (the limiter uses it for its own).
``ErrorLog`` writes each distinct server-side error at most once per ``every_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["Episodes", "ErrorLog", "OutageLog"]

log = logging.getLogger("ratelimit_client")


class Episodes:
    """Counts events (failures, sheds) and logs them per episode rather than per event.

    An episode starts with the first event (one WARNING, ``started``), writes a summary
    every ``summary_every_s`` while events go on (``ongoing``), and ends at the first
    ``ok()`` at least ``quiet_s`` after the last event (one INFO line, ``ended``), so
    something flapping under load is one episode, not a pair of lines per blip. Each event
    has a ``weight`` (e.g. the decisions a failed call carried). The templates are
    ``str.format`` strings over ``detail``, ``events``, ``weight``, ``seconds`` (ongoing:
    since the last line) and ``duration`` (ended: first to last event).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        started: str,
        ongoing: str,
        ended: str,
        summary_every_s: float,
        quiet_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._started_text, self._ongoing_text, self._ended_text = started, ongoing, ended
        self._summary_every_s = summary_every_s
        self._quiet_s = quiet_s
        self._clock = clock
        self.in_episode = False
        #: Events and their total weight since creation.
        self.total = 0
        self.total_weight = 0
        #: ``clock()`` of the latest event (``None``: none yet).
        self.last_at: float | None = None
        self._events = self._weight = self._unreported = self._unreported_weight = 0
        self._started = self._last_report = 0.0

    def event(self, detail: str, weight: int = 1) -> None:
        """One event of ``weight`` happened, because of ``detail``."""
        self.total += 1
        self.total_weight += weight
        self._events += 1
        self._weight += weight
        now = self.last_at = self._clock()
        if not self.in_episode:
            self.in_episode = True
            self._started = self._last_report = now
            self._log.warning(self._started_text.format(detail=detail, events=1, weight=weight))
            return
        self._unreported += 1
        self._unreported_weight += weight
        seconds = now - self._last_report
        if seconds >= self._summary_every_s:
            self._log.warning(
                self._ongoing_text.format(
                    detail=detail,
                    events=self._unreported,
                    weight=self._unreported_weight,
                    seconds=seconds,
                )
            )
            self._unreported = self._unreported_weight = 0
            self._last_report = now

    def ok(self) -> None:
        """Things work; ends the episode if the last event is ``quiet_s`` old."""
        if not self.in_episode or self.last_at is None:
            return
        if self._clock() - self.last_at < self._quiet_s:
            return
        self._log.info(
            self._ended_text.format(
                events=self._events, weight=self._weight, duration=self.last_at - self._started
            )
        )
        self.in_episode = False
        self._events = self._weight = self._unreported = self._unreported_weight = 0


class OutageLog(Episodes):
    """Requests answered by the failure mode, logged per outage: ``failed`` per request,
    ``recovered`` per decision the limiter made."""

    def __init__(
        self,
        mode: str,
        *,
        summary_every_s: float = 10.0,
        quiet_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            log,
            started=f"rate limiter unavailable, failing {mode}: {{detail}}",
            ongoing=(
                f"rate limiter still unavailable, failing {mode}: {{events}} request(s) in the "
                "last {seconds:.0f} s; last cause: {detail}"
            ),
            ended=(
                "rate limiter answering again; the outage lasted {duration:.1f} s and "
                f"{{events}} request(s) failed {mode}"
            ),
            summary_every_s=summary_every_s,
            quiet_s=quiet_s,
            clock=clock,
        )
        self.mode = mode

    @property
    def in_outage(self) -> bool:
        """Whether an outage is going on."""
        return self.in_episode

    def failed(self, cause: str) -> None:
        """One request got no decision because of ``cause``."""
        self.event(cause)

    def recovered(self) -> None:
        """The limiter decided; ends the outage if the last failure is ``quiet_s`` old."""
        self.ok()


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
