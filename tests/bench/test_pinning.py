"""Unit: ``bench.attack.pinning`` on a real process tree (a Python process with a second
thread and a child process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.attack.pinning import edge_split, pin_threads, pin_tree

pytestmark = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="pinning apart needs 2 CPUs or more"
)

# A parent with one more thread and one child (itself with a thread of its own); it says
# "ready" with the child's pid once all of them run, then waits to be killed.
_TREE = """
import subprocess, sys, threading
child = subprocess.Popen([sys.executable, "-c",
    "import threading, sys; threading.Thread(target=sys.stdin.read).start(); print(flush=True)"
    "; sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
threading.Thread(target=sys.stdin.read, daemon=True).start()
print(child.pid, flush=True)
sys.stdin.read()
"""


def _tids(pid: int) -> set[int]:
    return {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture
def tree() -> Iterator[tuple[int, int]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", _TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with parent:  # closes its pipes and reaps it
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        try:
            yield parent.pid, child
        finally:
            os.kill(child, signal.SIGKILL)
            parent.kill()


def test_pin_tree_pins_every_thread_of_every_process(tree: tuple[int, int]) -> None:
    parent, child = tree
    edge, rest = edge_split(os.sched_getaffinity(0))
    threads = _tids(parent) | _tids(child)
    assert len(_tids(parent)) == 2 and len(_tids(child)) == 2
    assert sorted(pin_tree(parent, edge)) == sorted(threads)
    assert {tid: os.sched_getaffinity(tid) for tid in threads} == dict.fromkeys(threads, edge)
    # Only the parent's threads, its child untouched:
    assert sorted(pin_threads(parent, rest)) == sorted(_tids(parent))
    assert {tid: os.sched_getaffinity(tid) for tid in _tids(parent)} == dict.fromkeys(
        _tids(parent), rest
    )
    assert {tid: os.sched_getaffinity(tid) for tid in _tids(child)} == dict.fromkeys(
        _tids(child), edge
    )


def test_pinning_a_process_gone_pins_nothing() -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )  # ended and reaped: its pid names nothing now
    assert pin_tree(int(gone.stdout), os.sched_getaffinity(0)) == []


def test_edge_split_takes_the_last_cpu() -> None:
    assert edge_split({0, 1}) == (frozenset({1}), frozenset({0}))
    assert edge_split({0, 2, 3}) == (frozenset({3}), frozenset({0, 2}))
    with pytest.raises(ValueError, match="2 CPUs"):
        edge_split({0})
