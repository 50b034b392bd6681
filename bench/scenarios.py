"""The gRPC and Redis part: start each server through ``devstack``, drive it, make its rows.

Scenarios run one at a time, only the server under test running next to one
``redis-server``, so they do not compete for the cores:

1. the echo server (``bench.echo_server``), ``ShouldAllow`` and ``ShouldAllowBatch``
   (baseline A: gRPC alone);
2. the limiter on its embedded memory backend, ``ShouldAllow`` (gRPC + limiter, no Redis);
3. the limiter on Redis, ``ShouldAllow`` and ``ShouldAllowBatch`` (the subject), and
   Envoy's ``ShouldRateLimit`` with 1 and 3 descriptors a call (``ENVOY_DESCRIPTORS``; one
   decision per descriptor, all of a call's in one all-or-nothing group), with its
   metrics on (the default), then again with ``LIMITER_METRICS_LISTEN=`` (nothing
   recorded: what metrics cost, ``bench.metrics_cost``);
4. the echo server again, ``ShouldAllow`` over ``concurrency`` connections (one call in
   flight on each): the baseline of the next rows, laid out as they are, since gRPC spends
   more per call over many connections than over one;
5. the limiter on Redis with ``LIMITER_WORKERS`` 1 and then 2, ``ShouldAllow`` over
   ``concurrency`` connections (one call in flight on each, so the kernel spreads them
   over the workers; the row's ``raw.rpcs_by_worker`` says how it did);
6. ``redis-benchmark`` on the fixed-window script, 1 and ``batch_size`` keys per call
   (baseline B: Redis alone).

Each runs ``rounds`` times and reports its fastest round, since other processes on a
shared machine only ever slow a round down; errors and reasons are summed over every
round, so a bad round cannot hide. For the limiter on Redis the row also says how many
decisions shared one EVALSHA (Redis's ``INFO commandstats``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.cpu import BENCH, OTHERS, CpuWindow, cores, us_per, with_descendants
from bench.loadgen import Method, Tally, envoy_config, run_load
from bench.options import POLICY, BenchOptions
from bench.redis_baseline import REDIS, evalsha_calls, run_redis_benchmark
from bench.report import Kind, ScenarioResult
from devstack import (
    ManagedProcess,
    ProcessGroup,
    StandaloneRedis,
    free_port,
    start_redis,
    wait_for_tcp,
    wait_until,
)
from devstack.limiter import LimiterNode, start_limiter

__all__ = [
    "ENVOY_DESCRIPTORS",
    "METRICS_OFF",
    "METRICS_ON",
    "WORKER_COUNTS",
    "echo_connections_label",
    "limiter_env",
    "policies_yaml",
    "run_grpc",
    "workers_label",
]

ENVOY_DESCRIPTORS = (1, 3)
"""The ``ShouldRateLimit`` rows: descriptors per call."""

SERVER = "server"
METRICS_ON = "limiter/redis"
METRICS_OFF = "limiter/redis, metrics off"
_HOST = "127.0.0.1"
_READY_TIMEOUT_S = 20.0
WORKER_COUNTS = (1, 2)


def echo_connections_label(connections: int) -> str:
    """The label of the echo row measured over as many connections as the workers rows."""
    return f"echo, {connections} connections"


def workers_label(workers: int) -> str:
    """The label of the rows measuring ``LIMITER_WORKERS=workers``."""
    return f"limiter/redis, {workers} worker{'s' if workers > 1 else ''}"


def policies_yaml(options: BenchOptions) -> str:
    """The bench's policies file: ``POLICY``, a fixed window of ``policy_limit`` per
    ``policy_window``."""
    return (
        f"policies:\n  {POLICY}:\n    limit: {options.policy_limit}\n"
        f"    window: {options.policy_window}\n    algorithm: fixed_window\n"
    )


def limiter_env(options: BenchOptions, policies: Path) -> dict[str, str]:
    """The environment every benched limiter gets (its backend's variables aside)."""
    env = {"LIMITER_POLICIES": str(policies), "LIMITER_LOG_LEVEL": "WARNING"}
    env["LIMITER_SHUTDOWN_GRACE_S"] = "1"
    if options.redis_timeout_ms is not None:
        env["REDIS_TIMEOUT_MS"] = str(options.redis_timeout_ms)
    if options.decision_timeout_ms is not None:
        env["LIMITER_DECISION_TIMEOUT_MS"] = str(options.decision_timeout_ms)
    return env


class _Scenarios:
    """Measures servers with one set of options, next to one Redis; rows in ``rows``."""

    def __init__(
        self,
        options: BenchOptions,
        server: StandaloneRedis,
        client: redis.Redis,
        group: ProcessGroup,
    ) -> None:
        self._group = group
        self.options = options
        self.redis = server
        self.client = client
        self.rows: list[ScenarioResult] = []

    def server(
        self,
        process: ManagedProcess,
        target: str,
        kind: Kind,
        label: str,
        methods: tuple[Method, ...],
        *,
        uses_redis: bool = False,
        connections: int = 1,
        envoy: bool = False,
    ) -> None:
        """Measure ``methods`` on the server (its CPU: the process and its children, the
        workers; with ``envoy``, then ``ShouldRateLimit`` with each of
        ``ENVOY_DESCRIPTORS``), then stop it. With ``uses_redis`` the rows also get Redis's
        CPU per decision and its EVALSHA counts."""
        pids = with_descendants(process.pid)
        loads = [(method, 1) for method in methods]
        if envoy:
            loads += [(Method.SHOULD_RATE_LIMIT, count) for count in ENVOY_DESCRIPTORS]
        for method, descriptors in loads:
            self.rows.append(
                self._grpc(pids, target, kind, label, method, uses_redis, connections, descriptors)
            )
        process.terminate()

    def _grpc(
        self,
        pids: list[int],
        target: str,
        kind: Kind,
        label: str,
        method: Method,
        uses_redis: bool,
        connections: int,
        descriptors: int,
    ) -> ScenarioResult:
        roles = {SERVER: pids, REDIS: [self.redis.process.pid]}
        self.client.config_resetstat()
        tallies = [
            run_load(target, method, self.options, CpuWindow(roles), connections, descriptors)
            for _ in range(self.options.rounds)
        ]
        best = max(tallies, key=lambda tally: tally.decisions)
        errors: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for tally in tallies:
            errors.update(tally.errors)
            reasons.update(tally.reasons)
        raw = {
            **best.to_json(),
            "rounds": [_round(tally) for tally in tallies],
            "connections": connections,
            "server_processes": len(pids),
        }
        if uses_redis:
            raw.update(self._redis_counts(sum(t.all_calls for t in tallies) * best.batch_size))
        cpu, window = best.cpu_s, best.window_s
        name = f"{label} {method.value}"
        if method is Method.SHOULD_RATE_LIMIT:
            name += f", {descriptors} descriptor" + ("s" if descriptors > 1 else "")
        elif best.batch_size > 1:
            name += f" x{best.batch_size}"
        return ScenarioResult(
            name=name,
            kind=kind,
            batch_size=best.batch_size,
            calls_per_s=round(best.calls / window, 1),
            decisions_per_s=round(best.decisions / window, 1),
            p50_ms=best.percentile_ms(50),
            p99_ms=best.percentile_ms(99),
            errors=dict(errors),
            reasons=dict(reasons),
            server_cpu_us=us_per(cpu.get(SERVER), best.decisions),
            redis_cpu_us=us_per(cpu.get(REDIS), best.decisions) if uses_redis else None,
            loadgen_cpu_us=us_per(cpu.get(BENCH), best.decisions),
            others_cores=cores(cpu.get(OTHERS), window),
            raw=raw,
        )

    def workers(self, env: dict[str, str], workers: int) -> None:
        """``ShouldAllow`` on a limiter of ``workers`` workers, over ``concurrency``
        connections; the row's raw numbers get each worker's share of the RPCs."""
        workers_env = {**env, "LIMITER_BACKEND": "redis", "REDIS_URL": self.redis.url}
        workers_env["LIMITER_WORKERS"] = str(workers)
        name = f"limiter-{workers}-workers"
        node = start_limiter(self._group, name, free_port(_HOST), workers_env, host=_HOST)
        _wait_workers(node, workers)
        connections = self.options.concurrency
        label = workers_label(workers)
        process, single = node.process, Method.SHOULD_ALLOW
        pids = with_descendants(process.pid)
        row = self._grpc(pids, node.address, Kind.LIMITER, label, single, True, connections, 1)
        samples = node.metrics()
        row.raw["workers"] = workers
        row.raw["rpcs_by_worker"] = sorted(
            (samples.get("ratelimit_worker_rpcs", **labels) or 0.0)
            for labels in samples.labels("ratelimit_worker_rpcs")
        )
        self.rows.append(row)
        process.terminate()

    def _redis_counts(self, all_decisions: int) -> dict[str, Any]:
        evalsha = evalsha_calls(self.client)
        stats: dict[str, Any] = self.client.info("stats")
        return {
            "redis_evalsha_calls": evalsha,
            "decisions_per_evalsha": round(all_decisions / evalsha, 2) if evalsha else None,
            # redis-py drops a connection whose command timed out, so reconnects count the
            # attempts the limiter gave up on.
            "redis_connections_opened": int(stats["total_connections_received"]),
        }


def _wait_workers(node: LimiterNode, workers: int) -> None:
    """Wait until every worker has published its numbers (the parent lists it)."""
    if workers == 1:
        return
    wait_until(
        lambda: True if len(node.metrics().labels("ratelimit_worker_rpcs")) == workers else None,
        timeout=_READY_TIMEOUT_S,
        waiting_for=f"{workers} workers of {node.process.name}",
        retry_on=(OSError,),
        watch=(node.process,),
    )


def _start_echo(group: ProcessGroup, name: str) -> tuple[ManagedProcess, str]:
    """Start the echo server as ``name`` on a free port; it and its address, once it takes
    connections."""
    port = free_port(_HOST)
    argv = [sys.executable, "-m", "bench.echo_server"]
    echo = group.start(name, argv, {"LIMITER_LISTEN": f"{_HOST}:{port}"})
    wait_for_tcp(_HOST, port, _READY_TIMEOUT_S, echo)
    return echo, f"{_HOST}:{port}"


def _round(tally: Tally) -> dict[str, Any]:
    return {
        "decisions_per_s": round(tally.decisions / tally.window_s, 1),
        "p50_ms": tally.percentile_ms(50),
        "p99_ms": tally.percentile_ms(99),
        "error_count": sum(tally.errors.values()),
        "others_cores": cores(tally.cpu_s.get(OTHERS), tally.window_s),
    }


def run_grpc(
    options: BenchOptions, workdir: Path, machine: dict[str, Any]
) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """Measure every scenario (processes' logs in ``workdir/logs``); the rows and the
    settings used. Adds ``redis_server`` (its version) to ``machine``.

    Raises ``devstack.DevstackError`` when a server does not come up, ``TimeoutError``
    when one does not take a connection, ``RuntimeError`` when redis-benchmark fails;
    every process started is stopped first.
    """
    policies = workdir / "policies.yaml"
    policies.write_text(policies_yaml(options))
    envoy_rules = workdir / "envoy.yaml"
    envoy_rules.write_text(envoy_config(options))
    env = {**limiter_env(options, policies), "LIMITER_ENVOY_CONFIG": str(envoy_rules)}
    single, batch = Method.SHOULD_ALLOW, Method.SHOULD_ALLOW_BATCH
    with ProcessGroup(workdir / "logs") as group:
        server = start_redis(group, workdir=workdir / "redis", timeout=_READY_TIMEOUT_S)
        with server.client(decode_responses=True) as client:
            machine["redis_server"] = str(client.info("server").get("redis_version", "?"))
            run = _Scenarios(options, server, client, group)
            echo, target = _start_echo(group, "echo")
            run.server(echo, target, Kind.ECHO, "echo", (single, batch))
            for backend, methods, metrics in (
                ("memory", (single,), True),
                ("redis", (single, batch), True),
                ("redis", (single, batch), False),
            ):
                backend_env = {**env, "LIMITER_BACKEND": backend, "REDIS_URL": server.url}
                name = f"limiter-{backend}"
                label, redis_backed = f"limiter/{backend}", backend == "redis"
                if not metrics:
                    backend_env["LIMITER_METRICS_LISTEN"] = ""
                    name, label = f"{name}-no-metrics", METRICS_OFF
                node = start_limiter(group, name, free_port(_HOST), backend_env, host=_HOST)
                run.server(
                    node.process,
                    node.address,
                    Kind.LIMITER,
                    label,
                    methods,
                    uses_redis=redis_backed,
                    envoy=redis_backed and metrics,
                )
            connections = options.concurrency
            echo, target = _start_echo(group, "echo-connections")
            label = echo_connections_label(connections)
            run.server(echo, target, Kind.ECHO, label, (single,), connections=connections)
            for workers in WORKER_COUNTS:
                run.workers(env, workers)
            for batch_size in (1, options.batch_size):
                run.rows.append(run_redis_benchmark(server, options, batch_size))
    settings = dataclasses.asdict(options)
    for key in ("output", "workdir", "edge"):
        del settings[key]
    settings["limiter_env"] = {
        k: v for k, v in env.items() if k not in ("LIMITER_POLICIES", "LIMITER_ENVOY_CONFIG")
    }
    return run.rows, settings
