"""Under attack, end to end through Nginx: ours against the in-process ``limits`` apps.

The two sides are ``bench.edge``'s (``bench.edge.baseline.start_sides``): our stack (Nginx,
two demo API replicas, two limiters on the Sentinel set, both deny caches on) and Nginx in
front of two ``bench.edge.limits_app`` replicas on the same Redis, with the same policy,
here small: ``rate_limit`` per ``time_window_s`` per client IP.

Three kinds of phase, each on one side while the other idles:

* ``calm``: ``good_clients`` well-behaved clients (``bench.attack.clients``), each from its
  own loopback address and well under its limit, at ``good_rate`` requests/s each: the
  latency they get without an attack;
* ``attack``: the same clients, while one abusive client (wrk, from 127.0.0.1, with
  ``attacker_connections`` connections, each waiting ``attacker_pace_ms`` after an answer)
  floods the same path far over its limit. A flood comes at the attacker's own rate, not
  as fast as the server answers, so the attacker is paced: both sides are offered the
  same load (at most ``connections * 1000 / pace_ms`` requests/s), and each answers what
  it can;
* ``capacity``: the same clients next to a closed-loop attacker (``capacity_connections``
  connections sending as fast as answers come): how many requests/s a side absorbs.

Calm and attack phases run in ``rounds`` rounds, and rounds interleave the sides (ours,
then the baseline), so that whatever else loads the machine meanwhile falls on both sides
and both phases alike; within a side, odd rounds go calm then attack and even ones attack
then calm, so neither phase is always the one after the other. A single p99 of one short
phase (about a thousand samples) swings by a factor of two or three from run to run on
two shared cores; the report pools each side's and phase's latencies over the rounds and
shows each round's p99 beside the pooled one. The capacity phases come last, once per side.

Each phase warms up for ``warmup_s`` unmeasured seconds, then is measured for
``duration_s``: every process's CPU per role, and the Redis master's ``INFO
commandstats``, from which the commands the idle stack sends anyway (measured for
``idle_s`` before the phases: the limiters' health probes, Sentinel, replication) are
subtracted.

With ``avoid_turnover``, an attack or capacity phase in which a boundary of the
attacker's fixed window would fall (both sides' windows align to the Unix epoch) first
waits until just after it (``bench.turnover``), so the attacker's fresh allowance is spent
in the unmeasured warm-up rather than in the measured window.

With ``pin_edge``, before the phases, the edge (both Nginx with all their processes, and
each attacker's wrk) is pinned to the last available CPU and everything else (the rest of
both sides, Redis, the bench process with its well-behaved clients) to the others, so
that the edge answering the flood does not take its CPU from the good clients' path.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import limits
import redis

from bench.attack.clients import GoodTally, client_addresses, run_good_clients
from bench.attack.pinning import edge_split, pin_threads, pin_tree
from bench.attack.report import ATTACK, CALM, CAPACITY, AttackReport, AttackRow
from bench.cpu import CpuWindow
from bench.edge import IDLE, Running, both_sides
from bench.edge.baseline import NGINX, Side
from bench.edge.report import LIMITED
from bench.edge.wrk import run_wrk
from bench.options import AttackOptions, EdgeOptions
from bench.turnover import MARGIN_S, wait_for_clean_window

__all__ = ["attacker_max_rps", "run_attack"]

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


@dataclass(frozen=True)
class _Attacker:
    """wrk's load in one phase: ``connections`` connections, each waiting ``pace_ms``
    after an answer (0: closed loop)."""

    connections: int
    pace_ms: int


async def _drive(
    options: AttackOptions,
    side: Side,
    sources: list[str],
    duration_s: int,
    attacker: _Attacker | None,
    edge_cpus: frozenset[int] | None,
) -> tuple[GoodTally, dict[str, Any] | None]:
    """The good clients for ``duration_s``, with ``attacker`` alongside unless ``None``
    (on ``edge_cpus`` unless ``None``)."""
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
    if attacker is not None:
        wrk = EdgeOptions(
            connections=attacker.connections,
            threads=min(options.attacker_threads, attacker.connections),
            request_timeout_s=options.request_timeout_s,
        )
        url = nginx.url + LIMITED
        report = await asyncio.to_thread(run_wrk, url, wrk, duration_s, attacker.pace_ms, edge_cpus)
    return await good, report


def _phase(
    options: AttackOptions,
    up: Running,
    sides: tuple[Side, Side],
    sources: list[str],
    background: dict[str, float],
    phase: str,
    round_: int,
    edge_cpus: frozenset[int] | None,
) -> AttackRow:
    side, idle = sides
    attacker = None
    if phase == ATTACK:
        attacker = _Attacker(options.attacker_connections, options.attacker_pace_ms)
    elif phase == CAPACITY:
        attacker = _Attacker(options.capacity_connections, 0)
    aligned_wait_s = 0.0
    if attacker is not None and options.avoid_turnover:
        span_s = options.warmup_s + options.duration_s + MARGIN_S
        aligned_wait_s = wait_for_clean_window(time.time(), options.time_window_s, span_s)
        time.sleep(aligned_wait_s)  # until a wall-clock instant: nothing else to wait on
    if options.warmup_s > 0:
        asyncio.run(_drive(options, side, sources, options.warmup_s, attacker, edge_cpus))
    window = CpuWindow({**side.roles, **up.shared, IDLE: idle.pids}, tool="wrk")
    before = _commands(up.master)
    window.open()
    good, report = asyncio.run(
        _drive(options, side, sources, options.duration_s, attacker, edge_cpus)
    )
    window_s, cpu = window.close()
    commands = _commands(up.master) - before
    commands["info"] -= 1  # our own INFO commandstats call
    return AttackRow(
        side=side.name,
        phase=phase,
        window_s=window_s,
        good=good,
        commands={name: n for name, n in sorted(commands.items()) if n > 0},
        background_per_s=background,
        cpu_s=cpu,
        attacker=report,
        attacker_connections=attacker.connections if attacker else 0,
        round=round_,
        aligned_wait_s=round(aligned_wait_s, 3),
    )


def _schedule(options: AttackOptions, up: Running) -> list[tuple[tuple[Side, Side], str, int]]:
    """Every phase in the order run: (the side measured and the idle one, phase, round)."""
    pairs = ((up.ours, up.theirs), (up.theirs, up.ours))
    order: list[tuple[tuple[Side, Side], str, int]] = []
    for round_ in range(1, options.rounds + 1):
        phases = (CALM, ATTACK) if round_ % 2 else (ATTACK, CALM)
        order += [(sides, phase, round_) for sides in pairs for phase in phases]
    if options.capacity_connections:
        order += [(sides, CAPACITY, 1) for sides in pairs]
    return order


def _pin_edge(up: Running, edge: frozenset[int], others: frozenset[int]) -> dict[str, int]:
    """Pin the bench process and everything it started to ``others``, then both Nginx
    (with their workers) to ``edge``; return how many threads each set got."""
    everything = set(pin_tree(os.getpid(), others))
    for pids in [*up.ours.roles.values(), *up.theirs.roles.values(), *up.shared.values()]:
        for pid in pids:  # in case one is not our descendant
            everything.update(pin_tree(pid, others))
    at_edge: set[int] = set()
    for side in (up.ours, up.theirs):
        for pid in side.roles[NGINX]:
            at_edge.update(pin_tree(pid, edge))
    return {"edge": len(at_edge), "others": len(everything - at_edge)}


def attacker_max_rps(options: AttackOptions) -> float | None:
    """The most requests/s the paced attacker can send (``None``: closed loop, no bound)."""
    if options.attacker_pace_ms == 0:
        return None
    return options.attacker_connections * 1000 / options.attacker_pace_ms


def run_attack(options: AttackOptions, workdir: Path) -> AttackReport:
    """Start both sides under ``workdir``, measure every phase (see the module's
    docstring for the order), stop everything.

    Raises ``devstack.DevstackError`` when a process does not come up or a side does not
    answer 200 in time, ``RuntimeError``/``ValueError`` when wrk fails or its report is
    unreadable, ``FileNotFoundError`` without wrk or nginx, ``OSError`` when a
    well-behaved client's address cannot be bound.
    """
    sources = client_addresses(options.good_clients)
    rows: list[AttackRow] = []
    own_cpus = os.sched_getaffinity(0)
    edge_cpus: frozenset[int] | None = None
    other_cpus: frozenset[int] | None = None
    pinned: dict[str, int] | None = None
    if options.pin_edge:
        edge_cpus, other_cpus = edge_split(own_cpus)
    try:
        with both_sides(options, workdir) as up:
            if edge_cpus is not None and other_cpus is not None:
                pinned = _pin_edge(up, edge_cpus, other_cpus)
            background = _background_per_s(up.master, options.idle_s)
            for sides, phase, round_ in _schedule(options, up):
                row = _phase(options, up, sides, sources, background, phase, round_, edge_cpus)
                rows.append(row)
    finally:
        if options.pin_edge:
            pin_threads(os.getpid(), own_cpus)
    c = up.stack.config
    settings = {
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "good_clients": options.good_clients,
        "good_rate": options.good_rate,
        "rounds": options.rounds,
        "attacker_connections": options.attacker_connections,
        "attacker_pace_ms": options.attacker_pace_ms,
        "attacker_max_rps": attacker_max_rps(options),
        "attacker_threads": options.attacker_threads,
        "capacity_connections": options.capacity_connections,
        "limiter_timeout_ms": options.limiter_timeout_ms,
        "pin_edge": options.pin_edge,
        "avoid_turnover": options.avoid_turnover,
        "edge_cpus": sorted(edge_cpus) if edge_cpus is not None else None,
        "other_cpus": sorted(other_cpus) if other_cpus is not None else None,
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
        "pinned_threads": pinned,
    }
    return AttackReport(settings, notes, rows)
