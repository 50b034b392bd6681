"""Unit: the CPU sampler, on real work done by this process and by a child."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpu import BENCH, OTHERS, CpuWindow, with_descendants

_SPIN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_window_splits_cpu_by_role() -> None:
    window = CpuWindow({"me": [os.getpid()]}, tool="child")
    window.open()
    _spin(0.3)
    subprocess.run([sys.executable, "-c", _SPIN], check=True, timeout=30)
    window_s, seconds = window.close()
    assert list(seconds) == ["me", "child", BENCH, OTHERS]
    assert seconds["me"] >= 0.25 and seconds[BENCH] >= 0.25
    assert seconds["child"] >= 0.25  # reaped inside the window
    assert window_s >= 0.5 and seconds[OTHERS] >= 0


def test_descendants_include_children() -> None:
    with subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE) as child:
        try:
            found = with_descendants(os.getpid())
        finally:
            child.communicate(b"\n", timeout=30)
    assert found[0] == os.getpid() and child.pid in found
