"""Baseline B: ``redis-benchmark`` running the limiter's own fixed-window Lua script.

The script (``limiter_service.backends.scripts``, byte for byte) is loaded with ``SCRIPT
LOAD`` and called once by hand first, so a broken call fails loudly here (redis-benchmark
counts error replies as answers). Keys look like the limiter's
(``rl:{default:bench:user:<n>}:fw``, ``-r`` choosing ``n`` among ``keys``) and the arguments
are the bench policy's, so Redis does the same work per decision as under the limiter; the
batch variant passes ``batch_size`` keys per EVALSHA, as the limiter does for a batch.

redis-benchmark stops after a number of requests, not a time: a short first run warms Redis
up and measures its rate, and each measured run asks for ``rate * duration`` requests.
"""

from __future__ import annotations

import csv
import io
import subprocess
from typing import Any

import redis

from bench.cpu import OTHERS, CpuWindow, cores, us_per
from bench.options import POLICY, BenchOptions
from bench.report import Kind, ScenarioResult
from devstack import StandaloneRedis
from limiter_service.backends.scripts import ALGORITHM_CODES, load_script
from limiter_service.decision import Algorithm
from limiter_service.policies import parse_window

__all__ = ["REDIS", "evalsha_calls", "parse_csv", "run_redis_benchmark"]

REDIS = "redis"
TOOL = "redis-benchmark"
_PROBE_REQUESTS = 5_000
_MAX_REQUESTS = 2_000_000


def evalsha_calls(client: redis.Redis) -> int:
    """How many ``EVALSHA`` calls the server behind ``client`` served since its last
    ``CONFIG RESETSTAT``."""
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def parse_csv(text: str) -> tuple[float, float | None, float | None]:
    """``(rps, p50_ms, p99_ms)`` from ``redis-benchmark --csv`` output; older versions print
    no latencies (``None``). Raises ``ValueError`` when there is no result row."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "rps" not in rows[-1]:
        raise ValueError(f"no result in redis-benchmark output: {text!r}")
    row = rows[-1]
    p50, p99 = (row.get(f"{name}_latency_ms") or None for name in ("p50", "p99"))
    return float(row["rps"]), float(p50) if p50 else None, float(p99) if p99 else None


def _run(
    server: StandaloneRedis, clients: int, keys: int, requests: int, command: list[str]
) -> str:
    argv = [TOOL, "-h", server.host, "-p", str(server.port), "-c", str(clients)]
    argv += ["-n", str(requests), "-r", str(keys), "--csv", *command]
    # Bounded by its request count; the timeout only stops one that hangs.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{TOOL} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def run_redis_benchmark(
    server: StandaloneRedis, options: BenchOptions, batch_size: int
) -> ScenarioResult:
    """Run the fixed-window script ``options.rounds`` times for about ``duration_s`` each,
    with ``batch_size`` keys per EVALSHA from as many clients as the load generator has
    calls in flight; the fastest round's row (decisions = calls x ``batch_size``), every
    round's rate in ``raw``.

    Raises ``RuntimeError`` when the script misbehaves or redis-benchmark fails.
    """
    clients = options.batch_concurrency if batch_size > 1 else options.concurrency
    keys, limit = options.keys, options.policy_limit
    window_us = parse_window(options.policy_window)
    script = load_script()
    # Per hit: fixed window, limit, window, cost 1, no flags, no group (``scripts``).
    per_hit = [ALGORITHM_CODES[Algorithm.FIXED_WINDOW], limit, window_us, 1, 0, 0]
    with server.client() as client:
        client.script_load(script.source)
        probe = [f"rl:{{{POLICY}:bench:user:probe{i}}}:fw" for i in range(batch_size)]
        reply = client.evalsha(script.sha, batch_size, *probe, *per_hit * batch_size)
    if not isinstance(reply, list) or len(reply) != 4 * batch_size or reply[0] != 1:
        raise RuntimeError(f"{Algorithm.FIXED_WINDOW}.lua answered {reply!r}")
    key = f"rl:{{{POLICY}:bench:user:__rand_int__}}:fw"
    command = ["EVALSHA", script.sha, str(batch_size), *[key] * batch_size]
    command += [str(number) for number in per_hit] * batch_size
    probe_requests = max(_PROBE_REQUESTS // batch_size, clients * 2)
    rate = parse_csv(_run(server, clients, keys, probe_requests, command))[0]
    requests = min(max(int(rate * options.duration_s), clients), _MAX_REQUESTS)
    measured = []
    for _ in range(options.rounds):
        window = CpuWindow({REDIS: [server.process.pid]}, tool=TOOL)
        window.open()
        output = _run(server, clients, keys, requests, command)
        measured.append((parse_csv(output), *window.close()))
    (rps, p50, p99), window_s, cpu_s = max(measured, key=lambda m: m[0][0])
    keys_word = "key" if batch_size == 1 else "keys"
    return ScenarioResult(
        name=f"redis-benchmark EVALSHA fixed_window.lua, {batch_size} {keys_word}",
        kind=Kind.REDIS_BENCHMARK,
        batch_size=batch_size,
        calls_per_s=rps,
        decisions_per_s=round(rps * batch_size, 1),
        p50_ms=p50,
        p99_ms=p99,
        redis_cpu_us=us_per(cpu_s[REDIS], requests * batch_size),
        others_cores=cores(cpu_s[OTHERS], window_s),
        raw={
            "requests": requests,
            "clients": clients,
            "window_s": window_s,
            "cpu_s": cpu_s,
            "rounds": [{"rps": m[0][0], "p50_ms": m[0][1], "p99_ms": m[0][2]} for m in measured],
        },
    )
