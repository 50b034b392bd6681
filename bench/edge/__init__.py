"""The end-to-end "speed bar": our stack through Nginx against FastAPI apps limiting
in-process with ``limits``, on the same machine, Redis and Nginx template, in one run.

Both sides run at once, on one Redis Sentinel set (``devstack.Stack``'s):

* ``ours``: the stack itself: Nginx, two demo API replicas asking two limiter replicas
  over gRPC, with a policy so large that every request is allowed and still counted;
* ``baseline`` (``bench.edge.baseline``): Nginx from the same template in front of two
  ``bench.edge.limits_app`` replicas, each calling Redis itself (fixed window, same policy).

Each scenario (a side and a path) is driven by wrk for ``warmup_s`` unmeasured seconds,
then ``duration_s`` measured ones; the side not under test sits idle (its CPU is reported
as ``other side (idle)`` and stays near zero). Meanwhile the CPU of every process is read
per role, and the ``EVALSHA`` calls the Redis master served, which shows how many
decisions share one round trip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import limits
import redis

from bench.cpu import CpuWindow
from bench.edge.baseline import Side, start_sides
from bench.edge.report import HEALTH, LIMITED, OURS, EdgeReport, EdgeRow
from bench.edge.wrk import run_wrk
from bench.options import AttackOptions, EdgeOptions
from bench.redis_baseline import evalsha_calls
from devstack import ProcessGroup, Stack, StackConfig, wait_until
from devstack.redis_probes import connect

__all__ = ["IDLE", "Running", "both_sides", "run_edge", "wait_answers"]

IDLE = "other side (idle)"
_READY_TIMEOUT_S = 15.0


class _NotYet(Exception):
    """An answer that is not the one waited for (yet)."""


def wait_answers(side: Side) -> None:
    """Return once each path answers 200 through ``side``'s Nginx, with ``RateLimit`` on
    our limited path (the first decisions may come late while connections open and be let
    through by the failure mode), so a side that cannot decide fails here instead of being
    measured. Raises ``devstack.DeadlineExceededError`` with the last answer."""
    for path in (HEALTH, LIMITED):
        wants_header = (side.name, path) == (OURS, LIMITED)

        def answered(path: str = path, wants_header: bool = wants_header) -> bool:
            status, headers = side.nginx.get(path, timeout=2.0)
            if status != 200 or (wants_header and "ratelimit" not in headers):
                raise _NotYet(f"{side.name} {path} answered {status} {headers}")
            return True

        wait_until(
            answered,
            timeout=_READY_TIMEOUT_S,
            waiting_for=f"{side.name} {path} to answer 200 through Nginx",
            retry_on=(OSError, http.client.HTTPException, _NotYet),
            watch=(side.nginx.process,),
        )


@dataclasses.dataclass(frozen=True)
class Running:
    """Both sides up and answering, and a connection to their Redis master."""

    stack: Stack
    ours: Side
    theirs: Side
    shared: dict[str, list[int]]
    master: redis.Redis


@contextlib.contextmanager
def both_sides(options: EdgeOptions | AttackOptions, workdir: Path) -> Iterator[Running]:
    """Start our stack (``workdir/stack``) with the ``options``' policy and limiter timeout,
    and the baseline beside it (``workdir/baseline``); yield once both answer (see
    ``wait_answers``); on exit close the master's connection and stop everything.

    Raises ``devstack.DevstackError`` when a process does not come up or a side does not
    answer 200 in time, ``FileNotFoundError`` without nginx.
    """
    config = StackConfig(
        rate_limit=options.rate_limit,
        time_window=options.time_window_s,
        limiter_timeout_ms=options.limiter_timeout_ms,
    )
    with (
        Stack(workdir / "stack", config) as stack,
        ProcessGroup(workdir / "baseline" / "logs") as group,
    ):
        ours, theirs, shared = start_sides(group, stack, workdir / "baseline" / "nginx")
        for side in (ours, theirs):
            wait_answers(side)
        topology = stack.topology
        master = connect(topology.current_master(), topology.password, timeout=5.0)
        try:
            yield Running(stack, ours, theirs, shared, master)
        finally:
            master.close()


def _measure(
    options: EdgeOptions,
    master: redis.Redis,
    sides: tuple[Side, Side],
    shared: dict[str, list[int]],
    path: str,
) -> EdgeRow:
    """Warm up, then drive the first side's Nginx on ``path`` (the second idles); the row."""
    side, idle = sides
    url = side.nginx.url + path
    if options.warmup_s > 0:
        run_wrk(url, options, options.warmup_s)
    window = CpuWindow({**side.roles, **shared, IDLE: idle.pids}, tool="wrk")
    evalsha = evalsha_calls(master)
    window.open()
    report = run_wrk(url, options, options.duration_s)
    cpu = window.close()
    return EdgeRow.from_wrk(side.name, path, report, cpu, evalsha_calls(master) - evalsha)


def _best(rounds: list[EdgeRow]) -> EdgeRow:
    """The fastest round, carrying a summary of every round."""
    best = max(rounds, key=lambda row: row.rps)
    best.rounds = [
        {
            "rps": row.rps,
            "p99_ms": row.p99_ms,
            "non_2xx": row.non_2xx,
            "socket_errors": row.socket_errors,
            "fail_open": row.fail_open or 0,
        }
        for row in rounds
    ]
    return best


def run_edge(options: EdgeOptions, workdir: Path) -> EdgeReport:
    """Start both sides under ``workdir`` (logs in ``workdir/stack/logs`` and
    ``workdir/baseline/logs``), measure every scenario ``options.rounds`` times, stop
    everything. Order per round: ours then the baseline on ``/limited_endpoint``, then the
    same on ``/health``.

    Raises ``devstack.DevstackError`` when a process does not come up or a side does not
    answer 200 (ours: with a real decision) within 15 s, ``RuntimeError``/``ValueError``
    when wrk fails or its report is unreadable, ``FileNotFoundError`` without wrk or nginx.
    """
    measured: dict[tuple[str, str], list[EdgeRow]] = {}
    with both_sides(options, workdir) as up:
        redis_version = str(up.master.info("server").get("redis_version", "?"))
        for _ in range(options.rounds):
            for path in (LIMITED, HEALTH):
                for sides in ((up.ours, up.theirs), (up.theirs, up.ours)):
                    row = _measure(options, up.master, sides, up.shared, path)
                    measured.setdefault((row.side, path), []).append(row)
    config = up.stack.config
    settings = {
        **dataclasses.asdict(options),
        "decision_timeout_ms": config.decision_timeout_ms,
        "nginx_workers": config.nginx_workers,
        "policy": f"fixed window, {options.rate_limit} per {options.time_window_s} s per client IP",
    }
    notes = {
        "cpu_count": os.cpu_count(),
        "shared_cores": "wrk, both Nginx, the API replicas, the limiters and Redis (master, 2 "
        "replicas, 3 Sentinels) all share these cores",
        "client": "every request comes from 127.0.0.1: one client IP, one Redis key per side",
        "baseline": f"limits {limits.__version__} FixedWindowRateLimiter (async, redis-py, "
        "through Sentinel), uvicorn settings of api.main:run",
        "redis_server": redis_version,
    }
    return EdgeReport(settings, notes, [_best(rows) for rows in measured.values()])
