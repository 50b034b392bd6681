"""The end-to-end "speed bar": our stack through Nginx against FastAPI apps limiting
in-process with ``limits``, on the same machine, Redis and Nginx template, in one run.

Both sides run at once, on one Redis Sentinel set (``devstack.Stack``'s):

* ``ours``: the stack itself: Nginx, two demo API replicas (``python -m api``) asking two
  limiter replicas over gRPC, with a policy so large that every request is allowed and
  still counted in Redis;
* ``baseline``: ``bench.edge_baseline``: Nginx from the same template in front of two
  ``bench.limits_app`` replicas, each calling Redis itself (fixed window, same policy).

Each scenario (a side and a path) is driven by wrk for ``warmup_s`` unmeasured seconds,
then ``duration_s`` measured ones; the side not under test sits idle (its CPU is reported,
as ``other side (idle)``, and stays near zero). Meanwhile the CPU of every process is read
from ``/proc`` per role, and the ``EVALSHA`` calls the Redis master served, which shows
how many decisions share one round trip.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import limits
import redis

from bench.edge_baseline import Baseline, start_baseline
from bench.edge_cpu import CpuWindow, with_descendants
from bench.edge_options import EdgeOptions
from bench.edge_report import BASELINE, HEALTH, LIMITED, OURS, EdgeReport, EdgeRow
from bench.edge_wrk import WrkSettings, run_wrk
from devstack import NginxNode, ProcessGroup, Stack, StackConfig, wait_until
from devstack.redis_probes import connect
from devstack.stack_config import API_SERVICES, LIMITER_SERVICES, NGINX_SERVICE

__all__ = ["run_edge"]

NGINX = "nginx"
APPS = "API replicas"
LIMITERS = "limiters"
REDIS_MASTER = "redis master"
REDIS_REPLICAS = "redis replicas"
SENTINELS = "sentinels"
IDLE = "other side (idle)"

_READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class _Side:
    """One side: its Nginx and its own processes by role."""

    name: str
    nginx: NginxNode
    roles: Mapping[str, list[int]]

    @property
    def pids(self) -> list[int]:
        return [pid for pids in self.roles.values() for pid in pids]


def _sides(stack: Stack, baseline: Baseline) -> tuple[_Side, _Side, dict[str, list[int]]]:
    """Ours, the baseline, and the roles both share (Redis)."""
    processes = stack.processes()
    ours = _Side(
        OURS,
        stack.nginx,
        {
            NGINX: with_descendants(processes[NGINX_SERVICE].pid),
            APPS: [processes[name].pid for name in API_SERVICES],
            LIMITERS: [processes[name].pid for name in LIMITER_SERVICES],
        },
    )
    theirs = _Side(
        BASELINE,
        baseline.nginx,
        {
            NGINX: with_descendants(baseline.nginx.process.pid),
            APPS: [replica.process.pid for replica in baseline.replicas],
        },
    )
    topology = stack.topology
    master, *replicas = topology.data_nodes
    shared = {
        REDIS_MASTER: [master.process.pid],
        REDIS_REPLICAS: [node.process.pid for node in replicas],
        SENTINELS: [node.process.pid for node in topology.sentinels],
    }
    return ours, theirs, shared


class _NotYet(Exception):
    """An answer that is not the one waited for (yet)."""


def _wait_answers(side: _Side, timeout_s: float) -> None:
    """Return once each path answers 200 through ``side``'s Nginx, with ``RateLimit`` on
    our limited path (the first decisions may come late while connections open, and be
    let through by the failure mode), so a side that cannot decide fails here instead of
    being measured. Raises ``devstack.DeadlineExceededError`` with the last answer."""
    for path in (HEALTH, LIMITED):
        wants_header = (side.name, path) == (OURS, LIMITED)

        def answered(path: str = path, wants_header: bool = wants_header) -> bool | None:
            status, headers = side.nginx.get(path, timeout=2.0)
            if status != 200:
                raise _NotYet(f"{side.name} {path} answered {status}")
            if wants_header and "ratelimit" not in headers:
                raise _NotYet(f"{side.name} {path} answered without RateLimit (fail-open)")
            return True

        wait_until(
            answered,
            timeout=timeout_s,
            waiting_for=f"{side.name} {path} to answer 200 through Nginx",
            retry_on=(OSError, http.client.HTTPException, _NotYet),
            watch=(side.nginx.process,),
        )


def _evalsha_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


class _Runner:
    """Measures scenarios with one set of options."""

    def __init__(self, options: EdgeOptions, redis_master: redis.Redis) -> None:
        self.options = options
        self.redis = redis_master
        self.wrk = WrkSettings(
            options.threads, options.connections, options.duration_s, options.request_timeout_s
        )

    def measure(self, side: _Side, idle: _Side, shared: dict[str, list[int]], path: str) -> EdgeRow:
        """Warm up, then drive ``side``'s Nginx on ``path`` and return the row."""
        url = side.nginx.url + path
        if self.options.warmup_s > 0:
            run_wrk(url, dataclasses.replace(self.wrk, duration_s=self.options.warmup_s))
        window = CpuWindow({**side.roles, **shared, IDLE: idle.pids})
        evalsha = _evalsha_calls(self.redis)
        window.open()
        result = run_wrk(url, self.wrk)
        window_s, cpu_s = window.close(result.cpu_s)
        evalsha = _evalsha_calls(self.redis) - evalsha
        return EdgeRow.from_wrk(side.name, path, result, window_s, cpu_s, evalsha)


def _best(rounds: list[EdgeRow]) -> EdgeRow:
    """The fastest round, carrying a summary of every round (errors of slower rounds
    included, so they cannot hide)."""
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
    ``workdir/baseline/logs``), measure every scenario ``options.rounds`` times and stop
    everything. Order per round: ours then the baseline on ``/limited_endpoint``, then the
    same on ``/health``.

    Raises ``devstack.DevstackError`` when a process does not come up or a side does not
    answer 200 (ours: with a real decision) within 15 s, ``RuntimeError``/``ValueError``
    when wrk fails or its report is unreadable, ``FileNotFoundError`` without wrk or nginx.
    """
    defaults = StackConfig()
    config = StackConfig(
        rate_limit=options.rate_limit,
        time_window=options.time_window_s,
        limiter_timeout_ms=options.limiter_timeout_ms or defaults.limiter_timeout_ms,
    )
    with (
        Stack(workdir / "stack", config) as stack,
        ProcessGroup(workdir / "baseline" / "logs") as group,
    ):
        baseline = start_baseline(group, stack, workdir / "baseline" / "nginx")
        ours, theirs, shared = _sides(stack, baseline)
        for side in (ours, theirs):
            _wait_answers(side, _READY_TIMEOUT_S)
        topology = stack.topology
        master = connect(topology.current_master(), topology.password, timeout=5.0)
        try:
            redis_version = str(master.info("server").get("redis_version", "?"))
            runner = _Runner(options, master)
            scenarios = [(ours, theirs, LIMITED), (theirs, ours, LIMITED)]
            scenarios += [(ours, theirs, HEALTH), (theirs, ours, HEALTH)]
            measured: dict[tuple[str, str], list[EdgeRow]] = {}
            for _ in range(options.rounds):
                for side, idle, path in scenarios:
                    row = runner.measure(side, idle, shared, path)
                    measured.setdefault((side.name, path), []).append(row)
        finally:
            master.close()
        stack_config = stack.config
    settings = {
        **dataclasses.asdict(options),
        "limiter_timeout_ms": stack_config.limiter_timeout_ms,
        "decision_timeout_ms": stack_config.decision_timeout_ms,
        "nginx_workers": stack_config.nginx_workers,
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
