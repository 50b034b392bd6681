"""Driving one URL with ``wrk`` and ``devstack/wrk_report.lua``.

wrk is closed-loop: each connection sends its next request when the previous answer came,
so its latencies are those of a saturated server (queueing included), not of a steady
arrival rate. With a pace (``WRK_PACE_MS`` for the script) each connection waits that many
milliseconds after an answer, so ``connections`` connections send at most
``connections * 1000 / pace_ms`` requests per second whatever the server's speed. It runs
to completion as our child, so a ``CpuWindow`` with ``tool="wrk"`` around ``run_wrk``
counts its CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Set
from typing import Any

from bench.options import EdgeOptions
from devstack.wrk import WRK_SCRIPT, parse_wrk_report

__all__ = ["run_wrk"]

# wrk stops on its own after its duration; this only bounds a wrk that hangs.
_EXIT_SLACK_S = 30.0


def run_wrk(
    url: str,
    options: EdgeOptions,
    duration_s: int,
    pace_ms: int = 0,
    cpus: Set[int] | None = None,
) -> dict[str, Any]:
    """Run wrk on ``url`` for ``duration_s`` whole seconds with ``options.threads`` threads
    holding ``options.connections`` connections (``options.request_timeout_s``: its wait
    for one answer before counting a timeout), each waiting ``pace_ms`` after an answer
    (0: closed loop), on ``cpus`` only unless ``None``, and return its report; blocks
    meanwhile.

    Raises ``FileNotFoundError`` without wrk, ``RuntimeError`` when it fails,
    ``subprocess.TimeoutExpired`` when it outlives its duration by 30 s (it is killed),
    ``ValueError`` when its report cannot be read or was paced otherwise than asked.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    argv = [binary, f"-t{options.threads}", f"-c{options.connections}", f"-d{duration_s}s"]
    argv += [f"--timeout={options.request_timeout_s}s", "-s", str(WRK_SCRIPT), url]
    limit = duration_s + _EXIT_SLACK_S
    env = {**os.environ, "WRK_PACE_MS": str(pace_ms)}
    pin = None
    if cpus is not None:
        only = frozenset(cpus)

        def pin() -> None:  # in the child, before exec: wrk's threads inherit it
            os.sched_setaffinity(0, only)

    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
        env=env,
        preexec_fn=pin,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    report = parse_wrk_report(done.stdout)
    if report.get("pace_ms") != pace_ms:
        raise ValueError(f"wrk ran at pace {report.get('pace_ms')} ms, not {pace_ms} ms")
    return report
