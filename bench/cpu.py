"""Where the CPU goes while a scenario runs: seconds per role, read from ``/proc`` (Linux).

A role is a set of processes (the server under test, Redis, Nginx's master and workers,
the API replicas, ...). ``CpuWindow`` reads each one's CPU time when it opens and when it
closes, plus the calling process (``bench``: the load generator, or the process waiting
for wrk / redis-benchmark), the children reaped meanwhile (the tool, when one ran) and
what the whole machine spent beyond all of them (``others``). CPU per decision stays
meaningful on a shared machine where wall-clock rates do not. The resolution is the
kernel's clock tick (usually 10 ms per process), a few percent over a few seconds.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["BENCH", "OTHERS", "CpuWindow", "cores", "us_per", "with_descendants"]

BENCH = "bench"
OTHERS = "others"

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces);
    empty when the process is gone or there is no ``/proc``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _cpu_s(pid: int) -> float | None:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S if len(fields) > 12 else None


def _machine_ticks() -> tuple[int, int]:
    """All cores' ``(total, idle)`` clock ticks since boot (``(0, 0)`` without /proc)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0, 0
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    ticks = [int(value) for value in first[1:9]]
    return sum(ticks), ticks[3] + ticks[4]


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (e.g. Nginx's workers), as the kernel lists them
    now; just ``[pid]`` when it cannot say."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(found for child in children for found in with_descendants(int(child)))]


def us_per(seconds: float | None, count: int) -> float | None:
    """CPU microseconds per unit (decision, request); ``None`` when either is unknown."""
    return None if seconds is None or count <= 0 else round(seconds * 1e6 / count, 1)


def cores(seconds: float | None, window_s: float) -> float | None:
    """CPU seconds over a window's length: how many cores were kept busy on average."""
    return None if seconds is None or window_s <= 0 else round(seconds / window_s, 2)


class CpuWindow:
    """CPU seconds per role between ``open()`` and ``close()``. ``tool`` names the role of
    the children reaped meanwhile (wrk, redis-benchmark): they are counted only once
    reaped, so run the tool to completion inside the window."""

    def __init__(self, roles: Mapping[str, Sequence[int]], tool: str | None = None) -> None:
        self._roles = {role: tuple(pids) for role, pids in roles.items()}
        self._tool = tool
        self._before: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        total, idle = _machine_ticks()
        out = {
            "wall": time.monotonic(),
            BENCH: time.process_time(),
            OTHERS: (total - idle) / _TICKS_PER_S,
            "children": _children_s(),
        }
        for pids in self._roles.values():
            for pid in pids:
                seconds = _cpu_s(pid)
                if seconds is not None:
                    out[str(pid)] = seconds
        return out

    def open(self) -> None:
        """Start the window (reads every process's CPU time so far)."""
        self._before = self._read()

    def close(self) -> tuple[float, dict[str, float]]:
        """End the window: its length in seconds, and CPU seconds per role in the order
        given, then the tool's (if any), ``bench`` and ``others`` (busy CPU no role
        accounts for; 0 without ``/proc/stat``). A process that exited meanwhile counts
        for nothing."""
        after = self._read()
        spent = {key: after[key] - self._before[key] for key in after.keys() & self._before}
        seconds = {
            role: sum(spent.get(str(pid), 0.0) for pid in pids)
            for role, pids in self._roles.items()
        }
        if self._tool is not None:
            seconds[self._tool] = spent["children"]
        seconds[BENCH] = spent[BENCH]
        seconds[OTHERS] = max(0.0, spent[OTHERS] - sum(seconds.values()))
        return round(spent["wall"], 3), {role: round(s, 3) for role, s in seconds.items()}
