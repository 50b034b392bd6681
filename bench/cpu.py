"""CPU time of running processes, read from ``/proc`` (Linux).

Used to say how much CPU each process spent per decision, which stays meaningful when the
machine is shared and wall-clock throughput is not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path

__all__ = ["MACHINE", "SELF", "busy_share", "cpu_seconds", "snapshot", "used"]

SELF = "self"
"""The key under which ``snapshot`` reports the calling process."""
MACHINE = "machine"
"""The key under which ``snapshot`` reports the busy CPU time of all cores together."""

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used so far (all its threads, not its
    children), with 1/CLK_TCK (usually 10 ms) resolution. ``None`` when it cannot be read
    (no ``/proc``, or no such process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its ')' are fixed.
    fields = text.rpartition(")")[2].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
    except (IndexError, ValueError):
        return None


def snapshot(pids: Collection[int]) -> dict[str, float]:
    """CPU seconds so far of each readable pid (keyed by the pid as text) and of the calling
    process (key ``SELF``, from ``time.process_time``). When ``pids`` is not empty, also the
    busy CPU seconds of the whole machine (key ``MACHINE``), so that what others used can be
    told apart."""
    out = {SELF: time.process_time()}
    for pid in pids:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            out[str(pid)] = seconds
    if pids:
        times = _cpu_times()
        if times is not None:
            out[MACHINE] = (times[0] - times[1]) / _TICKS_PER_S
    return out


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds used between two snapshots, for keys present in both."""
    return {key: round(after[key] - before[key], 3) for key in before.keys() & after.keys()}


def _cpu_times() -> tuple[int, int] | None:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    ticks = [int(value) for value in first[1:9]]
    return sum(ticks), ticks[3] + ticks[4]


def busy_share(interval_s: float = 0.5) -> float | None:
    """Fraction (0..1) of the machine's CPU time that was busy (not idle or iowait) during
    the next ``interval_s`` seconds, over all cores; blocks that long. ``None`` without
    ``/proc/stat``."""
    before = _cpu_times()
    time.sleep(interval_s)
    after = _cpu_times()
    if before is None or after is None or after[0] <= before[0]:
        return None
    total = after[0] - before[0]
    idle = after[1] - before[1]
    return round(1 - idle / total, 3)
