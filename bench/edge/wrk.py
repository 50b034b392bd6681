"""Driving one URL with ``wrk`` and ``devstack/wrk_report.lua``.

wrk is closed-loop: each connection sends its next request when the previous answer came,
so its latencies are those of a saturated server (queueing included), not of a steady
arrival rate. It runs to completion as our child, so a ``CpuWindow`` with ``tool="wrk"``
around ``run_wrk`` counts its CPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from bench.options import EdgeOptions
from devstack import WRK_SCRIPT

__all__ = ["parse_report", "run_wrk"]

_MARK = "WRK_RESULT "
# wrk stops on its own after its duration; this only bounds a wrk that hangs.
_EXIT_SLACK_S = 30.0


def parse_report(output: str) -> dict[str, Any]:
    """The script's report in wrk's ``output``: ``requests``, ``duration_us``, ``statuses``
    (status text: count), ``missing_ratelimit`` (200s without a ``RateLimit`` header),
    socket errors (``connect``, ``read``, ``write``, ``timeout``), ``p50_us`` ... ``max_us``.
    Raises ``ValueError`` when the line is missing or malformed."""
    lines = [line for line in output.splitlines() if line.startswith(_MARK)]
    if not lines:
        raise ValueError(f"wrk printed no {_MARK.strip()} line:\n{output}")
    report: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    return report


def run_wrk(url: str, options: EdgeOptions, duration_s: int) -> dict[str, Any]:
    """Run wrk on ``url`` for ``duration_s`` whole seconds with ``options.threads`` threads
    holding ``options.connections`` connections (``options.request_timeout_s``: its wait
    for one answer before counting a timeout) and return its report; blocks meanwhile.

    Raises ``FileNotFoundError`` without wrk, ``RuntimeError`` when it fails,
    ``subprocess.TimeoutExpired`` when it outlives its duration by 30 s (it is killed),
    ``ValueError`` when its report cannot be read.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    argv = [binary, f"-t{options.threads}", f"-c{options.connections}", f"-d{duration_s}s"]
    argv += [f"--timeout={options.request_timeout_s}s", "-s", str(WRK_SCRIPT), url]
    limit = duration_s + _EXIT_SLACK_S
    done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return parse_report(done.stdout)
