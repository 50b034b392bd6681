"""Load and observation through Nginx: wrk in the background, and a sequential probe.

``Wrk`` runs ``wrk`` with ``devstack/wrk_report.lua`` as a managed process (bounded by its duration,
stopped with its group) and parses what the script prints: every status, the 200s not
counted by the limiter, and wrk's socket errors. ``Probe`` sends one request at a time from
its own source address and keeps when each answer came and whether it was counted, which
is what recovery times are measured on.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass

import httpx

from devstack import WRK_SCRIPT, ManagedProcess, ProcessGroup, parse_wrk_report
from devstack.lifecycle import StopsOnExit

__all__ = ["LoadResult", "Probe", "ProbeAnswer", "Wrk", "find_wrk"]

_SCRIPT = WRK_SCRIPT


def find_wrk() -> str | None:
    """Path of the ``wrk`` binary, ``None`` if it is not installed."""
    return shutil.which("wrk")


@dataclass(frozen=True)
class LoadResult:
    """What wrk saw. ``uncounted``: 200s without a ``RateLimit`` header."""

    statuses: dict[int, int]
    uncounted: int
    requests: int
    duration_s: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p99_ms: float

    @property
    def socket_errors(self) -> int:
        """Connections refused or broken, and requests that got no answer in time."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    def summary(self) -> str:
        """One line for assertion messages and reports."""
        return (
            f"{self.requests} requests in {self.duration_s:.1f} s ({self.rps:.0f}/s), "
            f"statuses {dict(sorted(self.statuses.items()))}, uncounted 200s {self.uncounted}, "
            f"socket errors connect={self.connect_errors} read={self.read_errors} "
            f"write={self.write_errors} timeout={self.timeouts}, p99 {self.p99_ms:.0f} ms"
        )


class Wrk:
    """``wrk`` against ``url`` with ``connections`` connections for ``duration_s`` whole
    seconds (wrk takes no fractions), started at once in ``group`` (so it is stopped with
    it)."""

    def __init__(
        self,
        group: ProcessGroup,
        url: str,
        *,
        connections: int,
        duration_s: int,
        threads: int = 2,
        timeout_s: float = 10.0,
        name: str = "wrk",
    ) -> None:
        binary = find_wrk()
        if binary is None:
            raise FileNotFoundError("wrk is not installed")
        self.duration_s = duration_s
        self.started = time.monotonic()
        self.process: ManagedProcess = group.start(
            name,
            [
                binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration_s}s",
                f"--timeout={timeout_s:g}s",
                "-s",
                str(_SCRIPT),
                url,
            ],
        )
        self._log_start = self.process.log_path.stat().st_size

    def result(self, slack_s: float = 20.0) -> LoadResult:
        """Wait for wrk to finish (at most its duration + ``slack_s``) and parse its report.

        Raises ``AssertionError`` if wrk failed or printed no report.
        """
        remaining = self.duration_s + slack_s - (time.monotonic() - self.started)
        code = self.process.wait_exit(max(1.0, remaining))
        with self.process.log_path.open("rb") as log:
            log.seek(self._log_start)
            output = log.read().decode(errors="replace")
        assert code == 0, f"wrk exited {code}:\n{output}"
        data = parse_wrk_report(output)
        return LoadResult(
            statuses={int(status): int(n) for status, n in data["statuses"].items()},
            uncounted=int(data["missing_ratelimit"]),
            requests=int(data["requests"]),
            duration_s=int(data["duration_us"]) / 1e6,
            connect_errors=int(data["connect"]),
            read_errors=int(data["read"]),
            write_errors=int(data["write"]),
            timeouts=int(data["timeout"]),
            p99_ms=int(data["p99_us"]) / 1000,
        )


@dataclass(frozen=True)
class ProbeAnswer:
    """One probe request: when it was answered (``time.monotonic()``), how long it took,
    its status (0: no answer at all) and whether the limiter counted it."""

    at: float
    elapsed_s: float
    status: int
    counted: bool


class Probe(StopsOnExit):
    """Sequential GETs of ``url`` from ``local_address`` in a thread, from entering the
    ``with`` block until leaving it. ``answers`` grows as they come."""

    def __init__(self, url: str, local_address: str) -> None:
        self.url = url
        self.local_address = local_address
        self.answers: list[ProbeAnswer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the probe (at most one request later)."""
        self._stop.set()
        self._thread.join(timeout=15.0)

    def _run(self) -> None:
        transport = httpx.HTTPTransport(local_address=self.local_address)
        with httpx.Client(transport=transport, timeout=10.0) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = http.get(self.url)
                except httpx.TransportError:
                    status, counted = 0, False
                else:
                    status, counted = response.status_code, "RateLimit" in response.headers
                now = time.monotonic()
                self.answers.append(ProbeAnswer(now, now - started, status, counted))
                # One request at a time, at most every 20 ms: enough resolution to time
                # a recovery, without becoming load of its own.
                self._stop.wait(max(0.0, 0.02 - (now - started)))

    def answered_after(self, moment: float) -> list[ProbeAnswer]:
        """The answers that came after ``moment`` (a ``time.monotonic()`` value)."""
        return [answer for answer in self.answers if answer.at > moment]
