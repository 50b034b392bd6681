"""Under attack, end to end through Nginx: ours against the in-process ``limits`` apps.

The two sides are ``bench.edge``'s (``bench.edge.baseline.start_sides``): our stack (Nginx,
two demo API replicas, two limiters on the Sentinel set, both deny caches on) and Nginx in
front of two ``bench.edge.limits_app`` replicas on the same Redis, with the same policy,
here small: ``rate_limit`` per ``time_window_s`` per client IP.

Per side, two phases, the other side idle:

* ``calm``: ``good_clients`` well-behaved clients (``bench.attack.clients``), each from its
  own loopback address and well under its limit, at ``good_rate`` requests/s each: the
  latency they get without an attack;
* ``attack``: the same clients, while one abusive client (wrk, from 127.0.0.1, closed loop
  with ``attacker_connections`` connections) sends as fast as answers come, far over its
  limit: most of the requests, nearly all of them answered 429.

Each phase warms up for ``warmup_s`` unmeasured seconds, then is measured for
``duration_s``: every process's CPU per role, and the Redis master's ``INFO
commandstats``, from which the commands the idle stack sends anyway (measured for
``idle_s`` before the phases: the limiters' health probes, Sentinel, replication) are
subtracted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import limits
import redis

from bench.attack.clients import GoodTally, client_addresses, run_good_clients
from bench.attack.report import ATTACK, CALM, AttackReport, AttackRow
from bench.cpu import CpuWindow
from bench.edge import IDLE, both_sides
from bench.edge.baseline import Side
from bench.edge.report import LIMITED
from bench.edge.wrk import run_wrk
from bench.options import AttackOptions, EdgeOptions

__all__ = ["run_attack"]

ATTACKER_SOURCE = "127.0.0.1"  # wrk binds no address: it connects from the default one


def _commands(master: redis.Redis) -> Counter[str]:
    stats: dict[str, Any] = master.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def _background_per_s(master: redis.Redis, seconds: float) -> dict[str, float]:
    """Commands per second, by name, the master serves with nothing driving either side."""
    before, started = _commands(master), time.monotonic()
    time.sleep(seconds)  # a measuring interval: the background has no event to wait for
    elapsed = time.monotonic() - started
    served = _commands(master) - before
    served["info"] -= 1  # the INFO commandstats that ended the interval
    return {name: round(n / elapsed, 2) for name, n in sorted(served.items()) if n > 0}


async def _drive(
    options: AttackOptions, side: Side, sources: list[str], duration_s: int, attack: bool
) -> tuple[GoodTally, dict[str, Any] | None]:
    """The good clients for ``duration_s``, with the attacker alongside when ``attack``."""
    nginx = side.nginx
    good = asyncio.create_task(
        run_good_clients(
            sources,
            nginx.host,
            nginx.port,
            LIMITED,
            options.good_rate,
            duration_s,
            options.request_timeout_s,
        )
    )
    report = None
    if attack:
        wrk = EdgeOptions(
            connections=options.attacker_connections,
            threads=options.attacker_threads,
            request_timeout_s=options.request_timeout_s,
        )
        report = await asyncio.to_thread(run_wrk, nginx.url + LIMITED, wrk, duration_s)
    return await good, report


def _phase(
    options: AttackOptions,
    master: redis.Redis,
    sides: tuple[Side, Side],
    shared: dict[str, list[int]],
    sources: list[str],
    background: dict[str, float],
    attack: bool,
) -> AttackRow:
    side, idle = sides
    if options.warmup_s > 0:
        asyncio.run(_drive(options, side, sources, options.warmup_s, attack))
    window = CpuWindow({**side.roles, **shared, IDLE: idle.pids}, tool="wrk")
    before = _commands(master)
    window.open()
    good, report = asyncio.run(_drive(options, side, sources, options.duration_s, attack))
    window_s, cpu = window.close()
    commands = _commands(master) - before
    commands["info"] -= 1  # our own INFO commandstats call
    return AttackRow(
        side=side.name,
        phase=ATTACK if attack else CALM,
        window_s=window_s,
        good=good,
        commands={name: n for name, n in sorted(commands.items()) if n > 0},
        background_per_s=background,
        cpu_s=cpu,
        attacker=report,
    )


def run_attack(options: AttackOptions, workdir: Path) -> AttackReport:
    """Start both sides under ``workdir``, measure each side calm then under attack (ours
    first), stop everything.

    Raises ``devstack.DevstackError`` when a process does not come up or a side does not
    answer 200 in time, ``RuntimeError``/``ValueError`` when wrk fails or its report is
    unreadable, ``FileNotFoundError`` without wrk or nginx, ``OSError`` when a
    well-behaved client's address cannot be bound.
    """
    sources = client_addresses(options.good_clients)
    rows: list[AttackRow] = []
    with both_sides(options, workdir) as up:
        background = _background_per_s(up.master, options.idle_s)
        for attack in (False, True):
            for sides in ((up.ours, up.theirs), (up.theirs, up.ours)):
                rows.append(
                    _phase(options, up.master, sides, up.shared, sources, background, attack)
                )
    c = up.stack.config
    settings = {
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "good_clients": options.good_clients,
        "good_rate": options.good_rate,
        "attacker_connections": options.attacker_connections,
        "attacker_threads": options.attacker_threads,
        "limiter_timeout_ms": options.limiter_timeout_ms,
        "limiter_deny_cache_size": c.limiter_deny_cache_size,
        "api_deny_cache_size": c.api_deny_cache_size,
        "policy": f"fixed window, {options.rate_limit} per {options.time_window_s} s per client IP",
    }
    notes = {
        "cpu_count": os.cpu_count(),
        "good_sources": f"{sources[0]}..{sources[-1]}",
        "attacker_source": ATTACKER_SOURCE,
        "ours": "Nginx, 2 demo API replicas (client deny cache LIMITER_DENY_CACHE_SIZE="
        f"{c.api_deny_cache_size}), 2 limiters (deny cache {c.limiter_deny_cache_size}) on "
        "Redis Sentinel (master + 2 replicas + 3 Sentinels)",
        "baseline": f"Nginx, 2 FastAPI replicas with limits {limits.__version__} "
        "FixedWindowRateLimiter on the same Redis",
        "background_commands_per_s": background,
    }
    return AttackReport(settings, notes, rows)
