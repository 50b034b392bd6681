"""``python -m bench`` (``make bench``): run every scenario, print the tables, write JSON.

Prints, for the gRPC / Redis part, the cluster part, the end-to-end part and the
under-attack part in turn, a plain table,
warnings about anything that makes a number untrustworthy (errors, fail-open answers, a
busy machine) and a Markdown table for the README; writes the raw numbers to ``--output``
(``bench/results.json``). Exit status: 0 when every scenario measured something without
errors, 1 when one had errors (end to end: socket errors or non-2xx answers; under attack:
an attacker never denied, a well-behaved client denied or a paced attacker over its
pace) or no throughput (tables and JSON are still written), 2 for bad options, 3 when a
scenario could not run at all (the processes' logs are kept and their directory printed).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import redis

from bench.attack import run_attack
from bench.cluster import run_cluster
from bench.cpu import OTHERS, CpuWindow
from bench.edge import run_edge
from bench.metrics_cost import metrics_cost
from bench.options import BenchOptions, parse_args
from bench.report import BenchReport
from bench.scenarios import METRICS_OFF, METRICS_ON, run_grpc
from devstack import DevstackError

__all__ = ["machine_info", "main", "run_bench"]


def _busy_share(interval_s: float = 0.5) -> float | None:
    """Fraction (0..1) of all cores that other processes kept busy over ``interval_s``."""
    window = CpuWindow({})
    window.open()
    time.sleep(interval_s)  # a measuring interval: nothing to wait for
    window_s, seconds = window.close()
    return round(seconds[OTHERS] / window_s / (os.cpu_count() or 1), 3)


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: cores, CPU model, load, versions, and how busy the
    machine was before anything of ours ran."""
    models = [
        line.partition(":")[2].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": models[0] if models else "?",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_busy_before_start": _busy_share(),
    }


def run_bench(options: BenchOptions, workdir: Path) -> BenchReport:
    """Measure the gRPC / Redis part (unless ``options.grpc`` is false), the cluster
    part, the end-to-end part and the under-attack part (each unless its options are
    ``None``); logs under ``workdir``. Every process started is stopped before returning
    or raising."""
    machine = machine_info()
    rows, settings = run_grpc(options, workdir, machine) if options.grpc else ([], {"grpc": False})
    cluster = None
    if options.cluster is not None:
        cluster = run_cluster(options, options.cluster, workdir / "cluster")
    edge = run_edge(options.edge, workdir / "edge") if options.edge is not None else None
    attack = run_attack(options.attack, workdir / "attack") if options.attack else None
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    cost = metrics_cost(rows, METRICS_ON, METRICS_OFF)
    report = BenchReport(machine, settings, rows, edge, cost, cluster, attack)
    report.compute_ratios()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = run_bench(options, workdir)
    except (
        RuntimeError,  # redis-benchmark or wrk failing
        ValueError,  # output of redis-benchmark or wrk not understood
        DevstackError,
        subprocess.TimeoutExpired,
        OSError,  # TimeoutError included: a server that takes no connection
        redis.RedisError,
    ) as exc:
        print(f"bench failed: {exc}\nlogs: {workdir}", file=sys.stderr)
        return 3
    report.write(options.output)
    if report.scenarios:
        print(report.section())
    for part in (report.cluster, report.edge, report.attack):
        if part is not None:
            print(part.section())
    print(f"\nwrote {options.output}")
    if options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
