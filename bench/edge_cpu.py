"""Where the CPU goes during an edge scenario: seconds per role, read from ``/proc``.

A role is a set of processes (Nginx's master and workers, the two API replicas, ...).
``CpuWindow`` reads each one's CPU time when the window opens and when it closes; what the
machine spent beyond every role, the bench itself and wrk is reported as ``others``. The
resolution is the kernel's clock tick (usually 10 ms per process), so over several seconds
the split is good to a few percent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.cpu import MACHINE, SELF, snapshot, used

__all__ = ["BENCH", "OTHERS", "WRK", "CpuWindow", "with_descendants"]

BENCH = "bench"
"""The role of the calling process (it only waits for wrk)."""
WRK = "wrk"
OTHERS = "others"
"""Busy CPU of the machine that no role, the bench nor wrk accounts for."""


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (e.g. Nginx's workers), as ``/proc`` lists them
    now; just ``[pid]`` without ``/proc``."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return [pid]
    children: dict[int, list[int]] = {}
    for other in pids:
        parent = _parent(other)
        if parent is not None:
            children.setdefault(parent, []).append(other)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


class CpuWindow:
    """CPU seconds per role between ``open()`` and ``close()``."""

    def __init__(self, roles: Mapping[str, Sequence[int]]) -> None:
        self._roles = {role: tuple(pids) for role, pids in roles.items()}
        self._pids = [pid for pids in self._roles.values() for pid in pids]
        self._before: dict[str, float] = {}
        self._opened = 0.0

    def open(self) -> None:
        """Start the window (reads every process's CPU time so far)."""
        self._opened = time.monotonic()
        self._before = snapshot(self._pids)

    def close(self, wrk_cpu_s: float) -> tuple[float, dict[str, float]]:
        """End the window: its length in seconds, and CPU seconds per role in the order
        given, then ``wrk`` (``wrk_cpu_s``, measured by the caller), ``bench`` and
        ``others`` (absent without ``/proc/stat``). A process that exited meanwhile counts
        for nothing."""
        spent = used(self._before, snapshot(self._pids))
        window_s = time.monotonic() - self._opened
        seconds = {
            role: round(sum(spent.get(str(pid), 0.0) for pid in pids), 3)
            for role, pids in self._roles.items()
        }
        seconds[WRK] = round(wrk_cpu_s, 3)
        seconds[BENCH] = spent.get(SELF, 0.0)
        if MACHINE in spent:
            seconds[OTHERS] = round(max(0.0, spent[MACHINE] - sum(seconds.values())), 3)
        return round(window_s, 3), seconds
