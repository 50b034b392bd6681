"""Measuring one scenario: drive a server (or Redis) and turn what was counted into a row.

Each scenario runs ``rounds`` times back to back and reports its fastest round, because on
a shared machine other processes only ever slow a round down. Errors and answer reasons
are summed over *every* round, so a bad round cannot hide behind a good one.

Besides rates and latencies a row carries CPU microseconds per decision of the server and
of redis-server, and ``others_cores``: how many cores' worth of CPU processes other than
the bench's own used during the measured window (0 on a quiet machine; above ~0.25 the
rates are suspect).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

from bench.cpu import MACHINE
from bench.loadgen import Method
from bench.options import BenchOptions
from bench.redis_baseline import run_redis_benchmark
from bench.report import Kind, ScenarioResult
from bench.servers import RedisHandle
from limiter_service.policies import parse_window

__all__ = ["BenchError", "ScenarioRunner"]


class BenchError(RuntimeError):
    """A scenario could not be measured (the message says which and why)."""


def _per_decision_us(seconds: float | None, decisions: int) -> float | None:
    if seconds is None or decisions <= 0:
        return None
    return round(seconds * 1e6 / decisions, 1)


def _others_cores(cpu: dict[str, float], window_s: float) -> float | None:
    """Cores' worth of CPU used by processes other than those in ``cpu`` over the window."""
    if MACHINE not in cpu or window_s <= 0:
        return None
    ours = sum(value for key, value in cpu.items() if key != MACHINE)
    return round(max(0.0, cpu[MACHINE] - ours) / window_s, 2)


class ScenarioRunner:
    """Measures scenarios with one set of options and collects their rows in ``rows``."""

    def __init__(self, options: BenchOptions, redis: RedisHandle) -> None:
        self.options = options
        self.redis = redis
        self.rows: list[ScenarioResult] = []

    def _load(self, name: str, target: str, method: Method, watch: list[int]) -> dict[str, Any]:
        """Run ``bench.loadgen`` once against ``target``; its JSON result."""
        o = self.options
        batched = method is Method.SHOULD_ALLOW_BATCH
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            f"--target={target}",
            f"--method={method.value}",
            f"--concurrency={o.batch_concurrency if batched else o.concurrency}",
            f"--duration={o.duration_s}",
            f"--warmup={o.warmup_s}",
            f"--keys={o.keys}",
            f"--batch-size={o.batch_size}",
            f"--timeout={o.call_timeout_s}",
            f"--procs={o.procs}",
            *(f"--watch-pid={pid}" for pid in watch),
        ]
        limit = o.warmup_s + o.duration_s + o.call_timeout_s + 60.0
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{name}: load generator still running after {limit:.0f} s") from None
        if done.returncode != 0:
            raise BenchError(f"{name}: load generator exited {done.returncode}: {done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def grpc(
        self,
        name: str,
        kind: Kind,
        target: str,
        method: Method,
        server_pid: int,
        *,
        uses_redis: bool = False,
    ) -> ScenarioResult:
        """Drive ``target`` with the load generator and record a row. With ``uses_redis``
        the row also gets Redis's CPU per decision, and ``raw`` how many decisions shared
        one EVALSHA and how many connections Redis accepted (reconnects after timeouts).

        Raises ``BenchError`` when the load generator fails.
        """
        redis_pid = self.redis.process.pid
        self.redis.client.config_resetstat()
        rounds = [
            self._load(name, target, method, [server_pid, redis_pid])
            for _ in range(self.options.rounds)
        ]
        best = max(rounds, key=lambda result: float(result["decisions_per_s"]))
        errors: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for result in rounds:
            errors.update(result["errors"])
            reasons.update(result["reasons"])
        decisions = int(best["decisions"])
        cpu: dict[str, float] = best["cpu_s"]
        row = ScenarioResult(
            name=name,
            kind=kind,
            batch_size=int(best["batch_size"]),
            calls_per_s=float(best["calls_per_s"]),
            decisions_per_s=float(best["decisions_per_s"]),
            p50_ms=best["latency_ms"]["p50"],
            p99_ms=best["latency_ms"]["p99"],
            errors=dict(errors),
            reasons=dict(reasons),
            server_cpu_us=_per_decision_us(cpu.get(str(server_pid)), decisions),
            redis_cpu_us=_per_decision_us(cpu.get(str(redis_pid)), decisions)
            if uses_redis
            else None,
            loadgen_cpu_us=_per_decision_us(cpu.get("self"), decisions),
            others_cores=_others_cores(cpu, float(best["window_s"])),
            raw=best,
        )
        best["rounds"] = [
            {
                "decisions_per_s": r["decisions_per_s"],
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
                "error_count": r["error_count"],
                "others_cores": _others_cores(r["cpu_s"], float(r["window_s"])),
            }
            for r in rounds
        ]
        if uses_redis:
            self._redis_counts(best, sum(int(r["all_calls"]) for r in rounds) * row.batch_size)
        self.rows.append(row)
        return row

    def _redis_counts(self, raw: dict[str, Any], all_decisions: int) -> None:
        commands: dict[str, Any] = self.redis.client.info("commandstats")
        evalsha = int(commands.get("cmdstat_evalsha", {}).get("calls", 0))
        stats: dict[str, Any] = self.redis.client.info("stats")
        raw["redis_evalsha_calls"] = evalsha
        raw["decisions_per_evalsha"] = round(all_decisions / evalsha, 2) if evalsha else None
        # redis-py drops a connection whose command timed out, so reconnects count the
        # attempts the limiter gave up on.
        raw["redis_connections_opened"] = int(stats["total_connections_received"])

    def redis_benchmark(self, batch_size: int) -> ScenarioResult:
        """Run ``redis-benchmark`` on the fixed-window script with ``batch_size`` keys per
        call and record a row (fastest round, decisions = calls x ``batch_size``)."""
        o = self.options
        rounds = run_redis_benchmark(
            self.redis,
            clients=o.batch_concurrency if batch_size > 1 else o.concurrency,
            duration_s=o.duration_s,
            keys=o.keys,
            limit=o.policy_limit,
            window_us=parse_window(o.policy_window),
            batch_size=batch_size,
            rounds=o.rounds,
        )
        best = max(rounds, key=lambda result: result.rps)
        row = ScenarioResult(
            name=f"redis-benchmark {best.command}",
            kind=Kind.REDIS_BENCHMARK,
            batch_size=batch_size,
            calls_per_s=best.rps,
            decisions_per_s=round(best.rps * batch_size, 1),
            p50_ms=best.p50_ms,
            p99_ms=best.p99_ms,
            redis_cpu_us=_per_decision_us(best.redis_cpu_s, best.requests * batch_size),
            others_cores=best.others_cores,
            raw={
                "requests": best.requests,
                "clients": best.clients,
                "avg_ms": best.avg_ms,
                "redis_cpu_s": best.redis_cpu_s,
                "rounds": [{"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms} for r in rounds],
            },
        )
        self.rows.append(row)
        return row
