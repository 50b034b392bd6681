"""Baseline B: ``redis-benchmark`` running the limiter's own fixed-window Lua script.

The script is loaded with ``SCRIPT LOAD`` and called once by hand first, so a broken call
fails loudly here (``redis-benchmark`` counts error replies as answered requests). Keys
look like the limiter's (``rl:{default:bench:user:<n>}:fw`` with ``-r`` choosing ``n``
among ``keys``), and the arguments are those of the bench policy, so Redis does the same
work per decision as under the limiter. A batch variant passes ``batch_size`` keys per
EVALSHA, as the limiter does for ``ShouldAllowBatch``.

``redis-benchmark`` stops after a number of requests, not a time: a short first run warms
Redis up and measures its rate, and each measured run asks for ``rate * duration`` requests.
"""

from __future__ import annotations

import csv
import io
import resource
import subprocess
from dataclasses import dataclass
from importlib import resources

from bench.cpu import MACHINE, snapshot, used
from bench.servers import BENCH_POLICY, RedisHandle

__all__ = ["RedisBenchResult", "fixed_window_source", "parse_csv", "run_redis_benchmark"]

_MIN_REQUESTS = 1_000
_PROBE_REQUESTS = 5_000
_MAX_REQUESTS = 2_000_000
_CALIBRATION_S = 0.5


@dataclass(frozen=True, slots=True)
class RedisBenchResult:
    """One measured ``redis-benchmark`` run: ``rps`` EVALSHA calls per second, latencies
    in ms (``None`` when this redis-benchmark does not print them). ``redis_cpu_s`` is the
    CPU redis-server used during the run and ``others_cores`` the cores' worth of CPU that
    processes other than redis-server and redis-benchmark used meanwhile (``None``: not
    readable)."""

    command: str
    batch_size: int
    clients: int
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    avg_ms: float | None
    redis_cpu_s: float | None
    others_cores: float | None


def fixed_window_source() -> str:
    """The limiter's fixed-window script, byte for byte."""
    folder = resources.files("limiter_service.backends") / "lua"
    return (folder / "fixed_window.lua").read_text(encoding="utf-8")


def _storage_key(index: str) -> str:
    # Same shape as Limiter.hit_for builds for key "bench:user:<n>" on the bench policy.
    return f"rl:{{{BENCH_POLICY}:bench:user:{index}}}:fw"


def _command(sha: str, limit: int, window_us: int, batch_size: int, key_index: str) -> list[str]:
    keys = [_storage_key(key_index) for _ in range(batch_size)]
    argv = [str(limit), str(window_us), "1", "0"] * batch_size
    return ["EVALSHA", sha, str(batch_size), *keys, *argv]


def _check_reply(handle: RedisHandle, sha: str, limit: int, window_us: int, size: int) -> None:
    probe = _command(sha, limit, window_us, size, "probe")
    reply = handle.client.evalsha(sha, size, *probe[3:])
    if not isinstance(reply, list) or len(reply) != 4 * size or reply[0] != 1:
        raise RuntimeError(f"fixed_window.lua answered {reply!r} to {' '.join(probe[:4])} ...")


def parse_csv(text: str) -> tuple[float, float | None, float | None, float | None]:
    """``(rps, avg_ms, p50_ms, p99_ms)`` from ``redis-benchmark --csv`` output.

    Older versions print only ``"test","rps"``; the missing latencies are ``None``.
    Raises ``ValueError`` when no result row is found.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "rps" not in rows[-1]:
        raise ValueError(f"no result in redis-benchmark output: {text!r}")
    row = rows[-1]

    def number(name: str) -> float | None:
        value = row.get(name)
        return float(value) if value not in (None, "") else None

    rps = float(row["rps"])
    return rps, number("avg_latency_ms"), number("p50_latency_ms"), number("p99_latency_ms")


def _run(
    port: int, clients: int, keys: int, requests: int, command: list[str], timeout_s: float
) -> str:
    argv = [
        "redis-benchmark",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-c",
        str(clients),
        "-n",
        str(requests),
        "-r",
        str(keys),
        "--csv",
        *command,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_redis_benchmark(
    handle: RedisHandle,
    *,
    clients: int,
    duration_s: float,
    keys: int,
    limit: int,
    window_us: int,
    batch_size: int = 1,
    rounds: int = 1,
) -> list[RedisBenchResult]:
    """Run the fixed-window script through ``redis-benchmark`` ``rounds`` times, each for
    about ``duration_s``; one result per round.

    Raises ``RuntimeError`` when the script misbehaves or redis-benchmark fails, and
    ``subprocess.TimeoutExpired`` when a run takes far longer than asked.
    """
    sha = str(handle.client.script_load(fixed_window_source()))
    _check_reply(handle, sha, limit, window_us, batch_size)
    command = _command(sha, limit, window_us, batch_size, "__rand_int__")
    probe = max(_PROBE_REQUESTS // batch_size, clients * 2)
    rate, *_ = parse_csv(_run(handle.port, clients, keys, probe, command, 60.0))
    wanted = int(rate * max(duration_s, _CALIBRATION_S))
    requests = min(max(wanted, _MIN_REQUESTS // batch_size, clients), _MAX_REQUESTS)
    label = f"EVALSHA fixed_window.lua, {batch_size} key{'s' if batch_size > 1 else ''}"
    redis_pid = str(handle.process.pid)
    results: list[RedisBenchResult] = []
    for _ in range(rounds):
        before, children_before = snapshot([handle.process.pid]), _children_cpu_s()
        output = _run(handle.port, clients, keys, requests, command, 10 * duration_s + 60.0)
        after, children_after = snapshot([handle.process.pid]), _children_cpu_s()
        rps, avg_ms, p50_ms, p99_ms = parse_csv(output)
        cpu = used(before, after)
        redis_cpu = cpu.get(redis_pid)
        others: float | None = None
        if redis_cpu is not None and MACHINE in cpu and rps > 0:
            ours = redis_cpu + (children_after - children_before) + cpu.get("self", 0.0)
            others = round(max(0.0, cpu[MACHINE] - ours) / (requests / rps), 2)
        results.append(
            RedisBenchResult(
                label,
                batch_size,
                clients,
                requests,
                rps,
                p50_ms,
                p99_ms,
                avg_ms,
                redis_cpu,
                others,
            )
        )
    return results
