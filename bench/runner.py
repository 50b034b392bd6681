"""One bench run: start the servers, measure every scenario in turn, build the report.

Scenarios run one at a time, with only the server under test running next to Redis, so
they do not compete for the two cores:

1. echo ``ShouldAllow`` and echo ``ShouldAllowBatch`` (baseline A),
2. the limiter on its embedded memory backend, ``ShouldAllow`` (gRPC + limiter, no Redis),
3. the limiter on Redis, ``ShouldAllow`` and ``ShouldAllowBatch`` (the subject),
4. ``redis-benchmark`` on the fixed-window script, one key and ``batch_size`` keys per
   call (baseline B),
5. end to end through Nginx: our whole stack against FastAPI apps limiting in-process
   with ``limits`` (``bench.edge``; its own processes, once the others are stopped).

The load generator runs as its own process (``bench.loadgen``) with the same settings for
every gRPC scenario. For the limiter on Redis the run also counts EVALSHA calls (Redis
``INFO commandstats``), which shows how many decisions share one round trip.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import grpc

from bench.cpu import busy_share
from bench.edge import run_edge
from bench.loadgen import Method
from bench.options import BenchOptions
from bench.report import BenchReport, Kind, ScenarioResult
from bench.scenarios import BenchError, ScenarioRunner
from bench.servers import BenchServers, policies_yaml

__all__ = ["BenchError", "machine_info", "run_bench"]


def _limiter_env(options: BenchOptions, policies: Path) -> dict[str, str]:
    env = {"LIMITER_POLICIES": str(policies), "LIMITER_LOG_LEVEL": "WARNING"}
    if options.redis_timeout_ms is not None:
        env["REDIS_TIMEOUT_MS"] = str(options.redis_timeout_ms)
    if options.decision_timeout_ms is not None:
        env["LIMITER_DECISION_TIMEOUT_MS"] = str(options.decision_timeout_ms)
    return env


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: cores, CPU model, load, versions."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        # Measured before anything of ours runs: how much of the machine others use.
        "cpu_busy_before_start": busy_share(),
    }


def _grpc_scenarios(
    options: BenchOptions, workdir: Path, machine: dict[str, Any]
) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """The gRPC and redis-benchmark scenarios (see the module docstring): their rows and
    settings; adds ``redis_server`` to ``machine``."""
    policies = workdir / "policies.yaml"
    policies.write_text(policies_yaml(options.policy_limit, options.policy_window))
    limiter_env = _limiter_env(options, policies)
    single, batch = Method.SHOULD_ALLOW, Method.SHOULD_ALLOW_BATCH
    b = options.batch_size
    with BenchServers(workdir) as servers:
        redis = servers.start_redis()
        machine["redis_server"] = redis.version
        run = ScenarioRunner(options, redis)

        echo, target = servers.start_echo()
        run.grpc("echo ShouldAllow", Kind.ECHO, target, single, echo.pid)
        run.grpc(f"echo ShouldAllowBatch x{b}", Kind.ECHO, target, batch, echo.pid)
        servers.stop(echo)

        memory_env = {**limiter_env, "LIMITER_BACKEND": "memory"}
        memory, target = servers.start_limiter("limiter-memory", memory_env)
        run.grpc("limiter/memory ShouldAllow", Kind.LIMITER, target, single, memory.pid)
        servers.stop(memory)

        redis_env = {**limiter_env, "LIMITER_BACKEND": "redis", "REDIS_URL": redis.url}
        limiter, target = servers.start_limiter("limiter-redis", redis_env)
        for name, method in (
            ("limiter/redis ShouldAllow", single),
            (f"limiter/redis ShouldAllowBatch x{b}", batch),
        ):
            run.grpc(name, Kind.LIMITER, target, method, limiter.pid, uses_redis=True)
        servers.stop(limiter)

        run.redis_benchmark(1)
        run.redis_benchmark(b)
    settings = {
        "grpc": True,
        "concurrency": options.concurrency,
        "batch_concurrency": options.batch_concurrency,
        "load_procs": options.procs,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "rounds": options.rounds,
        "keys": options.keys,
        "batch_size": b,
        "call_timeout_s": options.call_timeout_s,
        "policy": {
            "limit": options.policy_limit,
            "window": options.policy_window,
            "algorithm": "fixed_window",
        },
        "limiter_env": {k: v for k, v in limiter_env.items() if k != "LIMITER_POLICIES"},
        "quick": options.quick,
    }
    return run.rows, settings


def run_bench(options: BenchOptions, workdir: Path) -> BenchReport:
    """Measure every scenario (``bench.scenarios``, then ``bench.edge`` unless
    ``options.edge`` is ``None``); servers' logs go to ``workdir/logs`` and
    ``workdir/edge``.

    Raises ``BenchError`` (or ``devstack.DevstackError`` when a server does not start),
    after stopping every server it started.
    """
    machine = machine_info()
    rows: list[ScenarioResult] = []
    settings: dict[str, Any] = {"grpc": options.grpc}
    if options.grpc:
        rows, settings = _grpc_scenarios(options, workdir, machine)
    edge = run_edge(options.edge, workdir / "edge") if options.edge is not None else None
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = BenchReport(machine, settings, rows, edge)
    report.compute_ratios()
    return report
