"""Results of the under-attack part: one row per side and phase, the targets, the tables.

A phase is ``calm`` (the well-behaved clients alone) or ``attack`` (the same clients while
one abusive client floods the same path). Redis commands are counted on the Sentinel
master from ``INFO commandstats``, which counts both the commands clients send and those
a Lua script runs (``EVALSHA`` and, inside it, ``TIME``, ``HMGET``, ``HSET``, ...).
``background_per_s`` is what the master served per second, by command, with both sides
idle (the limiters' health probes, Sentinel and replication traffic); the ``net`` figures
subtract it over the phase's window. Both sides decide only through scripts, so ``EVALSHA``
calls are the round trips the requests cost, and all commands the work Redis did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.attack.clients import GoodTally
from bench.cpu import BENCH, OTHERS, us_per
from bench.edge import IDLE
from bench.edge.report import BASELINE, OURS, cpu_grid, others_note
from bench.table import Grid, number, section, times

__all__ = ["ATTACK", "CALM", "AttackReport", "AttackRow", "Targets"]

CALM = "calm"
ATTACK = "attack"
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
    """One side in one phase. ``attacker`` is wrk's report (``None`` in the calm phase),
    ``good`` the well-behaved clients' tally, ``commands`` the master's command calls by
    name over the measured ``window_s``, ``cpu_s`` CPU seconds per role meanwhile."""

    side: str
    phase: str
    window_s: float
    good: GoodTally
    commands: dict[str, int]
    background_per_s: dict[str, float]
    cpu_s: dict[str, float]
    attacker: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.side}, {self.phase}"

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
            "window_s": self.window_s,
            "rps": self.rps,
            "requests": self.requests,
            "attacker_share": round(self.attacker_share, 4),
            "attacker": self.attacker,
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


@dataclass
class AttackReport:
    """The part: its settings, notes, every row and the targets it is held to."""

    settings: dict[str, Any]
    notes: dict[str, Any]
    rows: list[AttackRow]
    targets: Targets = field(default_factory=Targets)

    def row(self, side: str, phase: str) -> AttackRow | None:
        return next((r for r in self.rows if (r.side, r.phase) == (side, phase)), None)

    def verdicts(self) -> dict[str, Any]:
        """Each target's measured figure and whether it is met (``None``: not measured)."""
        ours, base = self.row(OURS, ATTACK), self.row(BASELINE, ATTACK)
        calm = self.row(OURS, CALM)
        rps_ratio = round(ours.rps / base.rps, 3) if ours and base and base.rps else None
        cpu_ratio = None
        if ours and base and ours.serving_cpu_us and base.serving_cpu_us:
            cpu_ratio = round(base.serving_cpu_us / ours.serving_cpu_us, 3)
        calls = ours.evalsha_per_request if ours else None
        p99_attack = ours.good.percentile_ms(99) if ours else None
        p99_calm = calm.good.percentile_ms(99) if calm else None
        return {
            "rps_vs_baseline": rps_ratio,
            "rps_vs_baseline_met": None
            if rps_ratio is None
            else rps_ratio >= self.targets.rps_vs_baseline,
            "serving_cpu_vs_baseline": cpu_ratio,
            "calls_per_request": calls,
            "calls_per_request_met": None
            if calls is None
            else calls <= self.targets.calls_per_request,
            "all_commands_per_request": ours.commands_per_request if ours else None,
            "good_p99_calm_ms": p99_calm,
            "good_p99_attack_ms": p99_attack,
            "good_p99_met": None
            if p99_attack is None or p99_calm is None
            else p99_attack <= p99_calm,
        }

    @property
    def failed(self) -> bool:
        """Whether a phase measured nothing, or the attack did not show: the attacker got
        no 429, or a well-behaved client got one."""
        for row in self.rows:
            if row.good.requests == 0 or row.good.statuses.get(429, 0):
                return True
            if row.attacker is not None and row.attacker_status(429) == 0:
                return True
        return False

    def caveats(self) -> list[str]:
        notes: list[str] = []
        for row in self.rows:
            if row.errors:
                notes.append(f"{row.name}: {row.errors} socket errors or unanswered requests")
            if limited := row.good.statuses.get(429, 0):
                notes.append(f"{row.name}: the well-behaved clients got {limited} 429s")
            if row.attacker is not None and row.attacker_status(429) == 0:
                notes.append(f"{row.name}: the attacker got no 429 at all")
            if row.good.missing_ratelimit and row.side == OURS:
                notes.append(
                    f"{row.name}: {row.good.missing_ratelimit} good requests were let through "
                    "by the failure mode (no RateLimit header)"
                )
            if note := others_note(row):
                notes.append(note)
        return notes

    def grid(self) -> Grid:
        return [_HEADER.split("|"), *(row.cells() for row in self.rows)]

    def cpu_grid(self) -> Grid:
        serving = [number(r.serving_cpu_us) for r in self.rows]
        return cpu_grid(self.rows, ["serving processes", *serving])

    def section(self) -> str:
        s, n, v = self.settings, self.notes, self.verdicts()
        title = (
            f"\nUnder attack, end to end through Nginx: {s['good_clients']} well-behaved "
            f"clients at {s['good_rate']} req/s each (open loop, from {n['good_sources']}), "
            f"one attacker from {n['attacker_source']} (wrk -t{s['attacker_threads']} "
            f"-c{s['attacker_connections']}, closed loop); {s['policy']}; "
            f"{s['duration_s']} s measured after {s['warmup_s']} s warm-up per phase.\n"
            f"ours: {n['ours']}\nbaseline: {n['baseline']}\n"
            f"Redis commands: master's INFO commandstats over the window, less "
            f"{sum(n['background_commands_per_s'].values()):.1f} commands/s measured with both "
            "sides idle; all commands include those run inside Lua scripts.\n"
        )

        def met(flag: bool | None) -> str:
            return "-" if flag is None else ("met" if flag else "MISSED")

        t = self.targets
        lines = [
            f"\ntargets (ours under attack): requests/s vs baseline "
            f"{times(v['rps_vs_baseline'])} (>= {t.rps_vs_baseline:g} x: "
            f"{met(v['rps_vs_baseline_met'])}; by the serving processes' CPU per request: "
            f"{times(v['serving_cpu_vs_baseline'])}); Redis round trips (EVALSHA)/request "
            f"{number(v['calls_per_request'], 3)} (<= {t.calls_per_request:g}: "
            f"{met(v['calls_per_request_met'])}; all commands, in-script ones included: "
            f"{number(v['all_commands_per_request'], 3)}); good clients' p99 "
            f"{number(v['good_p99_attack_ms'], 1)} ms vs {number(v['good_p99_calm_ms'], 1)} "
            f"ms calm (no worse: {met(v['good_p99_met'])})"
        ]
        footnote = (
            f"\n{n['cpu_count']} cores shared by every process; req/s counts every answer "
            "(429s included); good = the well-behaved clients, latency from each request's "
            "scheduled send time; Redis commands net of the idle background."
        )
        return section(title, [self.grid(), self.cpu_grid()], lines, self.caveats(), footnote)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "notes": self.notes,
            "scenarios": [row.to_json() for row in self.rows],
            "targets": {
                "rps_vs_baseline": self.targets.rps_vs_baseline,
                "calls_per_request": self.targets.calls_per_request,
            },
            "verdicts": self.verdicts(),
        }
