"""Pinning processes to CPUs: a process's every thread, and optionally every process below it.

Linux keeps a CPU affinity per thread, not per process, and a new thread or child takes its
creator's; so pinning something already running means setting it on each thread of each
process, as ``/proc/<pid>/task`` and ``/proc/<pid>/task/<tid>/children`` list them now.
A thread or process that ends meanwhile is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Set
from pathlib import Path

__all__ = ["edge_split", "pin_threads", "pin_tree"]


def _threads(pid: int) -> list[int]:
    try:
        return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def _children(pid: int, tids: list[int]) -> list[int]:
    found: list[int] = []
    for tid in tids:
        try:
            found += [
                int(child) for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            ]
        except OSError:
            continue
    return found


def _pin(tids: list[int], cpus: Set[int]) -> list[int]:
    pinned = []
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            continue  # ended meanwhile
        pinned.append(tid)
    return pinned


def pin_threads(pid: int, cpus: Set[int]) -> list[int]:
    """Pin every thread of ``pid`` (not its children) to ``cpus``; return the thread ids
    pinned. Raises ``PermissionError`` for a process not ours, ``OSError`` (EINVAL) when
    ``cpus`` has none this process may use."""
    return _pin(_threads(pid), cpus)


def pin_tree(pid: int, cpus: Set[int]) -> list[int]:
    """Pin every thread of ``pid`` and of every process below it to ``cpus``; return the
    thread ids pinned (a process's main thread id is its pid). Raises as ``pin_threads``."""
    tids = _threads(pid)
    pinned = _pin(tids, cpus)
    for child in _children(pid, tids):
        pinned += pin_tree(child, cpus)
    return pinned


def edge_split(available: Set[int]) -> tuple[frozenset[int], frozenset[int]]:
    """The edge's CPUs (the last available one) and everything else's (the others).
    Raises ``ValueError`` with fewer than two CPUs."""
    if len(available) < 2:
        raise ValueError(f"pinning the edge apart needs 2 CPUs or more, got {sorted(available)}")
    edge = max(available)
    return frozenset({edge}), frozenset(available) - {edge}
