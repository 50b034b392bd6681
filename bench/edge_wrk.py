"""Driving one URL with ``wrk`` and ``devstack/wrk_report.lua``; what it saw, typed.

wrk is closed-loop: each connection sends its next request when the previous answer came,
so its latencies are those of a saturated server (queueing included), not of a steady
arrival rate. Its CPU time is read from ``getrusage(RUSAGE_CHILDREN)`` around the run,
which counts it because it is our child and the only one reaped meanwhile.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass, field

from devstack import WRK_SCRIPT

__all__ = ["WrkResult", "WrkSettings", "find_wrk", "run_wrk"]

_SCRIPT = WRK_SCRIPT
_MARK = "WRK_RESULT "
# wrk stops on its own after its duration; this only bounds a wrk that hangs.
_EXIT_SLACK_S = 30.0


def find_wrk() -> str:
    """Path of the ``wrk`` binary; raises ``FileNotFoundError`` if it is not installed."""
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    return found


@dataclass(frozen=True, slots=True)
class WrkSettings:
    """How wrk drives a URL: whole seconds, since wrk takes no fractions.
    ``request_timeout_s`` is how long wrk waits for one answer before counting a timeout."""

    threads: int
    connections: int
    duration_s: int
    request_timeout_s: int = 5


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run. ``missing_ratelimit`` counts the 200s without a ``RateLimit`` header;
    latencies are in ms; ``cpu_s`` is wrk's own user + system CPU seconds."""

    requests: int
    duration_s: float
    statuses: dict[int, int] = field(default_factory=dict)
    missing_ratelimit: int = 0
    bytes_read: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        """Completed requests per second (every status)."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def socket_errors(self) -> int:
        """Connections refused or broken, and requests with no answer in time."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def non_2xx(self) -> int:
        """Answers whose status is not 2xx."""
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @classmethod
    def parse(cls, output: str, cpu_s: float) -> WrkResult:
        """The result in wrk's ``output``; raises ``ValueError`` when the script's line is
        missing or malformed."""
        lines = [line for line in output.splitlines() if line.startswith(_MARK)]
        if not lines:
            raise ValueError(f"wrk printed no {_MARK.strip()} line:\n{output}")
        data = json.loads(lines[-1][len(_MARK) :])
        return cls(
            requests=int(data["requests"]),
            duration_s=int(data["duration_us"]) / 1e6,
            statuses={int(status): int(n) for status, n in data["statuses"].items()},
            missing_ratelimit=int(data["missing_ratelimit"]),
            bytes_read=int(data["bytes"]),
            connect_errors=int(data["connect"]),
            read_errors=int(data["read"]),
            write_errors=int(data["write"]),
            timeouts=int(data["timeout"]),
            p50_ms=int(data["p50_us"]) / 1000,
            p90_ms=int(data["p90_us"]) / 1000,
            p99_ms=int(data["p99_us"]) / 1000,
            max_ms=int(data["max_us"]) / 1000,
            cpu_s=round(cpu_s, 3),
        )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, settings: WrkSettings) -> WrkResult:
    """Run wrk against ``url`` and return what it counted; blocks for the duration.

    Raises ``FileNotFoundError`` without wrk, ``RuntimeError`` when wrk fails,
    ``subprocess.TimeoutExpired`` when it outlives its duration by 30 s (it is killed),
    ``ValueError`` when its report cannot be read.
    """
    argv = [
        find_wrk(),
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{settings.duration_s}s",
        f"--timeout={settings.request_timeout_s}s",
        "-s",
        str(_SCRIPT),
        url,
    ]
    before = _children_cpu_s()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=settings.duration_s + _EXIT_SLACK_S,
        check=False,
    )
    cpu_s = _children_cpu_s() - before
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return WrkResult.parse(done.stdout, cpu_s)
