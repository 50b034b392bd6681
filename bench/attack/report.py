"""Results of the under-attack part: one row per side, phase and round, the same pooled
over the rounds, the targets, the tables.

A phase is ``calm`` (the well-behaved clients alone), ``attack`` (the same clients while
one paced abusive client floods the same path) or ``capacity`` (the same with a
closed-loop attacker: as many requests as the side can answer). The targets are held to
the rows pooled over every round: counts, commands and CPU added up, the good clients'
latencies pooled, so one noisy round weighs no more than its share of the samples.

Redis commands are counted on the Sentinel master from ``INFO commandstats``, which counts
both the commands clients send and those a Lua script runs (``EVALSHA`` and, inside it,
``TIME``, ``HMGET``, ``HSET``, ...). ``background_per_s`` is what the master served per
second, by command, with both sides idle (the limiters' health probes, Sentinel and
replication traffic); the ``net`` figures subtract it over the phase's window. Both sides
decide only through scripts, so ``EVALSHA`` calls are the round trips the requests cost,
and all commands the work Redis did.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.attack.clients import GoodTally
from bench.cpu import BENCH, OTHERS, us_per
from bench.edge import IDLE
from bench.edge.report import BASELINE, OURS, cpu_grid, others_note
from bench.table import Grid, number, section, times

__all__ = [
    "ALLOWED_MARK",
    "ATTACK",
    "CALM",
    "CAPACITY",
    "PHASES",
    "AttackReport",
    "AttackRow",
    "Targets",
    "pool",
]

CALM = "calm"
ATTACK = "attack"
CAPACITY = "capacity"
PHASES = (CALM, ATTACK, CAPACITY)
ALLOWED_MARK = "*"
"""After a p99 in the rounds table: the attacker's window turned over during that phase, so
its allowance went through to the APIs, limiters and Redis like any allowed request."""
_HEADER = (
    "scenario|req/s|attacker share|attacker 429s|attacker 200s|good req/s|good p50 ms|"
    "good p99 ms|good 429s|EVALSHA/req|Redis cmds/req (all)|errors"
)
# Roles that are not serving the side under test: the load generators, the idle side, and
# the rest of the machine.
_NOT_SERVING = frozenset({OTHERS, BENCH, IDLE, "wrk"})


@dataclass(frozen=True)
class Targets:
    """The issue's targets for our side under attack. ``calls_per_request`` is held
    against the script calls (round trips to Redis) per request."""

    rps_vs_baseline: float = 3.0
    calls_per_request: float = 0.1


@dataclass
class AttackRow:
    """One side in one phase of one ``round`` (from 1; ``None``: pooled over rounds).
    ``attacker`` is wrk's report (``None`` in the calm phase) and ``attacker_connections``
    its connections, ``good`` the well-behaved clients' tally, ``commands`` the master's
    command calls by name over the measured ``window_s``, ``cpu_s`` CPU seconds per role
    meanwhile."""

    side: str
    phase: str
    window_s: float
    good: GoodTally
    commands: dict[str, int]
    background_per_s: dict[str, float]
    cpu_s: dict[str, float]
    attacker: dict[str, Any] | None = None
    attacker_connections: int = 0
    round: int | None = None
    aligned_wait_s: float = 0.0
    """How long the bench waited before the phase for a window boundary to pass."""

    @property
    def name(self) -> str:
        return f"{self.side}, {self.phase}"

    @property
    def pace_ms(self) -> int:
        """Each attacker connection's wait between requests (0: closed loop or none)."""
        return int(self.attacker.get("pace_ms", 0)) if self.attacker else 0

    @property
    def attacker_ceiling_rps(self) -> float | None:
        """The most a paced attacker can send per second (``None`` unpaced): each of its
        connections waits ``pace_ms`` after every answer."""
        if not self.pace_ms:
            return None
        return self.attacker_connections * 1000 / self.pace_ms

    @property
    def attacker_requests(self) -> int:
        return int(self.attacker["requests"]) if self.attacker else 0

    def attacker_status(self, status: int) -> int:
        return int(self.attacker["statuses"].get(str(status), 0)) if self.attacker else 0

    @property
    def attacker_rps(self) -> float:
        if not self.attacker:
            return 0.0
        return self.attacker_requests / (int(self.attacker["duration_us"]) / 1e6)

    @property
    def good_rps(self) -> float:
        return self.good.requests / self.good.duration_s

    @property
    def rps(self) -> float:
        """Completed requests per second, every client and status."""
        return round(self.attacker_rps + self.good_rps, 1)

    @property
    def requests(self) -> int:
        return self.attacker_requests + self.good.requests

    @property
    def attacker_share(self) -> float:
        return self.attacker_requests / self.requests if self.requests else 0.0

    @property
    def errors(self) -> int:
        """Socket errors of either client, and good requests left unanswered."""
        attacker = 0
        if self.attacker:
            attacker = sum(int(self.attacker[k]) for k in ("connect", "read", "write", "timeout"))
        return attacker + self.good.socket_errors + self.good.unfinished

    @property
    def serving_cpu_us(self) -> float | None:
        """CPU µs per request of the side's own processes (Nginx, APIs, limiters, Redis,
        Sentinels): what a request costs, however busy the rest of the machine was."""
        seconds = sum(s for role, s in self.cpu_s.items() if role not in _NOT_SERVING)
        return us_per(seconds, self.requests)

    def net(self, name: str) -> float:
        """Calls of command ``name`` the phase caused: less the idle background's."""
        idle = self.background_per_s.get(name, 0.0) * self.window_s
        return max(0.0, self.commands.get(name, 0) - idle)

    @property
    def commands_per_request(self) -> float | None:
        """Every command Redis ran (scripts' inner ones included) per request, net."""
        names = self.commands.keys() | self.background_per_s.keys()
        total = sum(self.net(name) for name in names)
        return round(total / self.requests, 4) if self.requests else None

    @property
    def evalsha_per_request(self) -> float | None:
        """Script calls (round trips) per request, net."""
        calls = self.net("evalsha") + self.net("eval")
        return round(calls / self.requests, 4) if self.requests else None

    def cells(self) -> list[str]:
        attacked = self.attacker is not None
        return [
            self.name,
            number(self.rps),
            f"{self.attacker_share:.1%}" if attacked else "-",
            str(self.attacker_status(429)) if attacked else "-",
            str(self.attacker_status(200)) if attacked else "-",
            number(self.good_rps),
            number(self.good.percentile_ms(50), 1),
            number(self.good.percentile_ms(99), 1),
            str(self.good.statuses.get(429, 0)),
            number(self.evalsha_per_request, 3),
            number(self.commands_per_request, 3),
            str(self.errors),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "side": self.side,
            "phase": self.phase,
            "round": self.round,
            "aligned_wait_s": self.aligned_wait_s,
            "window_s": self.window_s,
            "rps": self.rps,
            "requests": self.requests,
            "attacker_share": round(self.attacker_share, 4),
            "attacker": self.attacker,
            "attacker_connections": self.attacker_connections,
            "attacker_rps": round(self.attacker_rps, 1),
            "attacker_ceiling_rps": self.attacker_ceiling_rps,
            "good": self.good.to_json(),
            "good_rps": round(self.good_rps, 1),
            "errors": self.errors,
            "commands": self.commands,
            "background_commands_per_s": self.background_per_s,
            "net_commands": {name: round(self.net(name), 1) for name in self.commands},
            "commands_per_request": self.commands_per_request,
            "evalsha_per_request": self.evalsha_per_request,
            "cpu_s": self.cpu_s,
            "serving_cpu_us_per_request": self.serving_cpu_us,
            "cpu_us_per_request": {
                role: us_per(seconds, self.requests) for role, seconds in self.cpu_s.items()
            },
        }


_SUMMED = (
    "requests",
    "duration_us",
    "bytes",
    "missing_ratelimit",
    "connect",
    "read",
    "write",
    "timeout",
    "status_errors",
)


def _pooled_attacker(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """wrk's reports as one: counts and durations added (percentiles do not add up, so
    the pooled report has none); the pace is the first report's."""
    if not reports:
        return None
    statuses: Counter[str] = Counter()
    for report in reports:
        statuses.update({status: int(n) for status, n in report["statuses"].items()})
    summed = {key: sum(int(r.get(key, 0)) for r in reports) for key in _SUMMED}
    pace = reports[0].get("pace_ms", 0)
    return {"statuses": dict(sorted(statuses.items())), "pace_ms": pace, **summed}


def pool(rows: Sequence[AttackRow]) -> AttackRow:
    """Rows of one side and phase as one row over all their windows (``round`` ``None``):
    durations, requests, commands and CPU added up, the good clients' latencies pooled.
    Raises ``ValueError`` when ``rows`` is empty or mixes sides or phases."""
    if not rows or len({(r.side, r.phase) for r in rows}) != 1:
        raise ValueError(f"cannot pool {[r.name for r in rows]}: one side and phase wanted")
    commands: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for row in rows:
        commands.update(row.commands)
        cpu.update(row.cpu_s)
    attackers = [row.attacker for row in rows if row.attacker is not None]
    return AttackRow(
        side=rows[0].side,
        phase=rows[0].phase,
        window_s=sum(row.window_s for row in rows),
        good=GoodTally.pooled([row.good for row in rows]),
        commands=dict(sorted(commands.items())),
        background_per_s=rows[0].background_per_s,
        cpu_s={role: round(seconds, 3) for role, seconds in cpu.items()},
        attacker=_pooled_attacker(attackers),
        attacker_connections=rows[0].attacker_connections,
        aligned_wait_s=round(sum(row.aligned_wait_s for row in rows), 3),
    )


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _rps(row: AttackRow | None) -> float | None:
    return row.rps if row else None


def _cpu_us(row: AttackRow | None) -> float | None:
    return row.serving_cpu_us if row else None


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def _met(value: float | None, holds: bool) -> bool | None:
    return None if value is None else holds


@dataclass
class AttackReport:
    """The part: its settings, notes, every row (one per side, phase and round, in the
    order measured) and the targets it is held to, on the rows pooled over rounds."""

    settings: dict[str, Any]
    notes: dict[str, Any]
    rows: list[AttackRow]
    targets: Targets = field(default_factory=Targets)

    def pooled_rows(self) -> list[AttackRow]:
        """One row per phase and side measured (calm, attack, capacity; ours first), each
        pooled over its rounds."""
        pooled = []
        for phase in PHASES:
            for side in (OURS, BASELINE):
                if rows := [r for r in self.rows if (r.side, r.phase) == (side, phase)]:
                    pooled.append(pool(rows))
        return pooled

    def row(self, side: str, phase: str) -> AttackRow | None:
        """``side``'s ``phase`` pooled over rounds; ``None`` when it was not measured."""
        rows = [r for r in self.rows if (r.side, r.phase) == (side, phase)]
        return pool(rows) if rows else None

    def rounds(self) -> list[int]:
        return sorted({r.round for r in self.rows if r.round is not None and r.phase != CAPACITY})

    def p99_by_round(self, side: str, phase: str) -> list[float | None]:
        """The good clients' p99 (ms) of each round, in round order."""
        by_round = {r.round: r for r in self.rows if (r.side, r.phase) == (side, phase)}
        return [
            by_round[n].good.percentile_ms(99) if n in by_round else None for n in self.rounds()
        ]

    def verdicts(self) -> dict[str, Any]:
        """Each target's measured figure and whether it is met (``None``: not measured),
        on the rows pooled over rounds; the capacity rows' figures alongside."""
        ours, base = self.row(OURS, ATTACK), self.row(BASELINE, ATTACK)
        calm = self.row(OURS, CALM)
        full, full_base = self.row(OURS, CAPACITY), self.row(BASELINE, CAPACITY)
        t = self.targets
        rps_ratio = _ratio(_rps(ours), _rps(base))
        capacity_ratio = _ratio(_rps(full), _rps(full_base))
        calls = ours.evalsha_per_request if ours else None
        p99_attack = ours.good.percentile_ms(99) if ours else None
        p99_calm = calm.good.percentile_ms(99) if calm else None
        p99_ratio = _ratio(p99_attack, p99_calm)
        base_calm = self.row(BASELINE, CALM)
        base_p99_ratio = _ratio(
            base.good.percentile_ms(99) if base else None,
            base_calm.good.percentile_ms(99) if base_calm else None,
        )
        return {
            "rps_vs_baseline": rps_ratio,
            "rps_vs_baseline_met": _met(rps_ratio, (rps_ratio or 0) >= t.rps_vs_baseline),
            "serving_cpu_vs_baseline": _ratio(_cpu_us(base), _cpu_us(ours)),
            "capacity_rps_vs_baseline": capacity_ratio,
            "capacity_rps_vs_baseline_met": _met(
                capacity_ratio, (capacity_ratio or 0) >= t.rps_vs_baseline
            ),
            "capacity_serving_cpu_vs_baseline": _ratio(_cpu_us(full_base), _cpu_us(full)),
            "calls_per_request": calls,
            "calls_per_request_met": _met(calls, (calls or 0) <= t.calls_per_request),
            "all_commands_per_request": ours.commands_per_request if ours else None,
            "good_p50_calm_ms": calm.good.percentile_ms(50) if calm else None,
            "good_p50_attack_ms": ours.good.percentile_ms(50) if ours else None,
            "good_p99_calm_ms": p99_calm,
            "good_p99_attack_ms": p99_attack,
            "good_p99_attack_vs_calm": p99_ratio,
            "good_p99_met": _met(p99_ratio, (p99_ratio or 0) <= 1.0),
            "baseline_good_p99_attack_vs_calm": base_p99_ratio,
            "good_p99_calm_by_round_ms": self.p99_by_round(OURS, CALM),
            "good_p99_attack_by_round_ms": self.p99_by_round(OURS, ATTACK),
            "good_p99_calm_round_median_ms": _median(self.p99_by_round(OURS, CALM)),
            "good_p99_attack_round_median_ms": _median(self.p99_by_round(OURS, ATTACK)),
        }

    def _overpaced(self, row: AttackRow) -> bool:
        ceiling = row.attacker_ceiling_rps
        return ceiling is not None and row.attacker_rps > ceiling

    @property
    def failed(self) -> bool:
        """Whether a phase measured nothing, or the attack did not show: the attacker got
        no 429, or a well-behaved client got one; or a paced attacker sent more than its
        pace allows (the pace was not applied)."""
        for row in self.rows:
            if row.good.requests == 0 or row.good.statuses.get(429, 0):
                return True
            if row.attacker is not None and row.attacker_status(429) == 0:
                return True
            if self._overpaced(row):
                return True
        return False

    def caveats(self) -> list[str]:
        notes: list[str] = []
        for row in self.rows:
            name = row.name if row.round is None else f"{row.name}, round {row.round}"
            if row.errors:
                notes.append(f"{name}: {row.errors} socket errors or unanswered requests")
            if limited := row.good.statuses.get(429, 0):
                notes.append(f"{name}: the well-behaved clients got {limited} 429s")
            if row.attacker is not None and row.attacker_status(429) == 0:
                notes.append(f"{name}: the attacker got no 429 at all")
            if self._overpaced(row):
                notes.append(
                    f"{name}: the attacker sent {row.attacker_rps:,.0f} req/s, over the "
                    f"{row.attacker_ceiling_rps:,.0f} its pace allows"
                )
            if row.good.missing_ratelimit and row.side == OURS:
                notes.append(
                    f"{name}: {row.good.missing_ratelimit} good requests were let through "
                    "by the failure mode (no RateLimit header)"
                )
            if note := others_note(row):
                notes.append(note.replace(row.name, name, 1))
        return notes

    def grid(self) -> Grid:
        return [_HEADER.split("|"), *(row.cells() for row in self.pooled_rows())]

    def rounds_grid(self) -> Grid:
        """Per round: the good clients' p99 in each side's calm and attack phases (marked
        ``ALLOWED_MARK`` where the attacker got some 200s) and the attack phases' req/s;
        last, the same pooled over the rounds."""
        columns = [(side, phase) for side in (OURS, BASELINE) for phase in (CALM, ATTACK)]
        header = ["round", *(f"{s} {p} p99 ms" for s, p in columns)]
        header += [f"{side} attack req/s" for side in (OURS, BASELINE)]
        by_key = {(r.side, r.phase, r.round): r for r in self.rows}
        grid = [header]
        for n in self.rounds():
            cells = [str(n)]
            for side, phase in columns:
                row = by_key.get((side, phase, n))
                p99 = number(row.good.percentile_ms(99) if row else None, 1)
                cells.append(p99 + ALLOWED_MARK if row and row.attacker_status(200) else p99)
            for side in (OURS, BASELINE):
                row = by_key.get((side, ATTACK, n))
                cells.append(number(row.rps if row else None))
            grid.append(cells)
        pooled = ["pooled"]
        for side, phase in columns:
            row = self.row(side, phase)
            pooled.append(number(row.good.percentile_ms(99) if row else None, 1))
        for side in (OURS, BASELINE):
            row = self.row(side, ATTACK)
            pooled.append(number(row.rps if row else None))
        return [*grid, pooled]

    def cpu_grid(self) -> Grid:
        rows = self.pooled_rows()
        serving = [number(r.serving_cpu_us) for r in rows]
        return cpu_grid(rows, ["serving processes", *serving])

    def section(self) -> str:
        s, n, v = self.settings, self.notes, self.verdicts()
        capacity = (
            f"then once per side a capacity phase, the same clients next to a closed-loop "
            f"attacker (wrk -t{s['attacker_threads']} -c{s['capacity_connections']})"
            if s["capacity_connections"]
            else "no capacity phase"
        )
        pace = "closed loop"
        if s["attacker_pace_ms"]:
            pace = (
                f"each connection {s['attacker_pace_ms']} ms between requests: at most "
                f"{number(s['attacker_max_rps'])} req/s offered to either side"
            )
        title = (
            f"\nUnder attack, end to end through Nginx: {s['good_clients']} well-behaved "
            f"clients at {s['good_rate']} req/s each (open loop, from {n['good_sources']}), "
            f"one attacker from {n['attacker_source']} (wrk -t{s['attacker_threads']} "
            f"-c{s['attacker_connections']}, {pace}); {s['policy']}. {s['rounds']} rounds "
            "of a calm and an attack phase per side (order alternating), "
            f"{s['duration_s']} s measured after {s['warmup_s']} s warm-up each, pooled "
            f"over rounds; {capacity}.\n"
            f"ours: {n['ours']}\nbaseline: {n['baseline']}\n"
            f"Redis commands: master's INFO commandstats over the window, less "
            f"{sum(n['background_commands_per_s'].values()):.1f} commands/s measured with both "
            "sides idle; all commands include those run inside Lua scripts.\n"
        )

        def met(flag: bool | None) -> str:
            return "-" if flag is None else ("met" if flag else "MISSED")

        def ms(values: list[float | None]) -> str:
            return "/".join(number(value, 1) for value in values)

        t = self.targets
        lines = [
            f"\ntargets (ours under the paced attack, pooled over rounds): requests/s vs "
            f"baseline {times(v['rps_vs_baseline'])} (>= {t.rps_vs_baseline:g} x: "
            f"{met(v['rps_vs_baseline_met'])}; by the serving processes' CPU per request: "
            f"{times(v['serving_cpu_vs_baseline'])}); at capacity (closed-loop attacker) "
            f"{times(v['capacity_rps_vs_baseline'])} ({met(v['capacity_rps_vs_baseline_met'])}"
            f"; by CPU per request: {times(v['capacity_serving_cpu_vs_baseline'])}); Redis "
            f"round trips (EVALSHA)/request {number(v['calls_per_request'], 3)} (<= "
            f"{t.calls_per_request:g}: {met(v['calls_per_request_met'])}; all commands, "
            f"in-script ones included: {number(v['all_commands_per_request'], 3)}); good "
            f"clients' p99 {number(v['good_p99_attack_ms'], 1)} ms under attack vs "
            f"{number(v['good_p99_calm_ms'], 1)} ms calm = "
            f"{times(v['good_p99_attack_vs_calm'])} (no worse: {met(v['good_p99_met'])}; "
            f"by round {ms(v['good_p99_attack_by_round_ms'])} vs "
            f"{ms(v['good_p99_calm_by_round_ms'])} ms, medians "
            f"{number(v['good_p99_attack_round_median_ms'], 1)} vs "
            f"{number(v['good_p99_calm_round_median_ms'], 1)} ms; p50 "
            f"{number(v['good_p50_attack_ms'], 1)} vs {number(v['good_p50_calm_ms'], 1)} ms; "
            "the baseline's good p99 under attack vs calm: "
            f"{times(v['baseline_good_p99_attack_vs_calm'])})"
        ]
        cores = f"{n['cpu_count']} cores shared by every process"
        if s.get("pin_edge"):
            edge, others = (",".join(map(str, s[key])) for key in ("edge_cpus", "other_cpus"))
            cores = (
                f"{n['cpu_count']} cores, pinned: edge (Nginx + attacker) on CPU {edge}, "
                f"everything else (API replicas, limiters, Redis, the well-behaved clients) "
                f"on CPUs {others}"
            )
        footnote = (
            f"\n{cores}; req/s counts every answer "
            "(429s included); good = the well-behaved clients, latency from each request's "
            "scheduled send time, pooled over rounds; Redis commands net of the idle "
            f"background; {ALLOWED_MARK} after a round's p99: the attacker's window turned "
            "over during that phase, and its allowance was decided and served like any "
            "allowed request."
        )
        if s.get("avoid_turnover"):
            waited = sum(row.aligned_wait_s for row in self.rows)
            footnote += (
                " Attack and capacity phases start just after a window boundary when one "
                f"would fall in them (waited {waited:.1f} s in all), so the turnover lands "
                f"in the unmeasured warm-up; a {ALLOWED_MARK} then means the warm-up was too "
                "short to absorb the allowance."
            )
        grids = [self.grid(), self.rounds_grid(), self.cpu_grid()]
        return section(title, grids, lines, self.caveats(), footnote)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "notes": self.notes,
            "scenarios": [row.to_json() for row in self.pooled_rows()],
            "rounds": [row.to_json() for row in self.rows],
            "targets": {
                "rps_vs_baseline": self.targets.rps_vs_baseline,
                "calls_per_request": self.targets.calls_per_request,
            },
            "verdicts": self.verdicts(),
        }
