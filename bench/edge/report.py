"""Results of the end-to-end part: one row per scenario, ours / baseline ratios, tables.

A row is one path (``/limited_endpoint`` or ``/health``) through one side's Nginx: ``ours``
(APIs asking our limiters over gRPC) or ``baseline`` (APIs limiting in-process with
``limits``). ``fail_open`` is counted only where it means something: on our limited path,
where a 200 without a ``RateLimit`` header was let through by the failure mode rather than
decided (the baseline sends no such header; when it cannot reach Redis it answers 500,
which shows in ``non_2xx``). ``decided_per_s`` is the rate of real decisions: counted 200s
plus 429s; ``None`` on ``/health``, which is not limited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bench.cpu import OTHERS, cores, us_per
from bench.table import Grid, number, section, times

__all__ = [
    "BASELINE",
    "HEALTH",
    "LIMITED",
    "OURS",
    "EdgeReport",
    "EdgeRow",
    "MeasuredRow",
    "cpu_grid",
    "others_note",
]

OURS = "ours"
BASELINE = "baseline"
LIMITED = "/limited_endpoint"
HEALTH = "/health"

_FAIL_OPEN_WARNING = 0.001
_OTHERS_WARNING = 0.25
_HEADER = "scenario|req/s|decided/s|p50 ms|p99 ms|non-2xx|socket errors|fail-open"


class MeasuredRow(Protocol):
    """What ``cpu_grid`` and ``others_note`` read of a row (an edge or an attack one)."""

    @property
    def name(self) -> str: ...
    @property
    def requests(self) -> int: ...
    @property
    def window_s(self) -> float: ...
    @property
    def cpu_s(self) -> dict[str, float]: ...


def cpu_grid(rows: Sequence[MeasuredRow], *extra: list[str]) -> Grid:
    """CPU microseconds per request of each role (columns: the rows), then the ``extra``
    rows, then the busy cores."""
    roles = list(dict.fromkeys(role for row in rows for role in row.cpu_s))
    grid = [["CPU us/request", *(row.name for row in rows)]]
    grid += [
        [role, *(number(us_per(r.cpu_s.get(role), r.requests)) for r in rows)] for role in roles
    ]
    busy = [number(cores(sum(row.cpu_s.values()), row.window_s), 2) for row in rows]
    return [*grid, *extra, ["busy cores", *busy]]


def others_note(row: MeasuredRow) -> str | None:
    """A caveat when processes outside the bench kept the machine busy during ``row``."""
    others = cores(row.cpu_s.get(OTHERS), row.window_s) or 0.0
    if others > _OTHERS_WARNING:
        return f"{row.name}: other processes used {others:.2f} cores meanwhile"
    return None


@dataclass
class EdgeRow:
    """One scenario's fastest round, from wrk's report (``bench.edge.wrk``): requests
    completed in ``duration_s``, by status; the 200s without a ``RateLimit`` header;
    socket errors (refused, broken, timed out); latencies in ms. ``cpu_s`` is CPU seconds
    per role over the measured ``window_s``; ``redis_evalsha`` the ``EVALSHA`` calls the
    Redis master served meanwhile; ``rounds`` sums up every round, slower ones included
    (their errors cannot hide)."""

    side: str
    path: str
    requests: int
    duration_s: float
    statuses: dict[int, int]
    missing_ratelimit: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    window_s: float
    cpu_s: dict[str, float]
    redis_evalsha: int | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def from_wrk(
        cls,
        side: str,
        path: str,
        report: dict[str, Any],
        cpu: tuple[float, dict[str, float]],
        redis_evalsha: int | None,
    ) -> EdgeRow:
        """A row from wrk's report and the ``CpuWindow``'s ``(window_s, cpu_s)``."""
        errors = sum(int(report[kind]) for kind in ("connect", "read", "write", "timeout"))
        ms = {q: int(report[f"{q}_us"]) / 1000 for q in ("p50", "p90", "p99")}
        return cls(
            side=side,
            path=path,
            requests=int(report["requests"]),
            duration_s=int(report["duration_us"]) / 1e6,
            statuses={int(status): int(n) for status, n in report["statuses"].items()},
            missing_ratelimit=int(report["missing_ratelimit"]),
            socket_errors=errors,
            p50_ms=ms["p50"],
            p90_ms=ms["p90"],
            p99_ms=ms["p99"],
            window_s=cpu[0],
            cpu_s=cpu[1],
            redis_evalsha=redis_evalsha,
        )

    @property
    def name(self) -> str:
        return f"{self.side} {self.path}"

    @property
    def rps(self) -> float:
        """Completed requests per second, every status."""
        return round(self.requests / self.duration_s, 1) if self.duration_s > 0 else 0.0

    @property
    def all_socket_errors(self) -> int:
        """Socket errors of every round (this one's when rounds were not summed up)."""
        return sum(int(r["socket_errors"]) for r in self.rounds) or self.socket_errors

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def fail_open(self) -> int | None:
        """The 200s the failure mode let through; ``None`` where not counted."""
        return self.missing_ratelimit if (self.side, self.path) == (OURS, LIMITED) else None

    @property
    def fail_open_share(self) -> float | None:
        if self.fail_open is None:
            return None
        return self.fail_open / self.requests if self.requests else 0.0

    @property
    def decided_per_s(self) -> float | None:
        """Real decisions per second (counted 200s and 429s); ``None`` off the limited path."""
        if self.path != LIMITED or self.duration_s <= 0:
            return None
        decided = self.statuses.get(200, 0) - (self.fail_open or 0) + self.statuses.get(429, 0)
        return round(decided / self.duration_s, 1)

    def cpu_us_per_request(self, role: str) -> float | None:
        """CPU microseconds ``role`` spent per completed request; ``None`` if not measured."""
        return us_per(self.cpu_s.get(role), self.requests)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "name": self.name,
            "rps": self.rps,
            "decided_per_s": self.decided_per_s,
            "non_2xx": self.non_2xx,
            "fail_open": self.fail_open,
            "fail_open_share": self.fail_open_share,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "cpu_us_per_request": {role: self.cpu_us_per_request(role) for role in self.cpu_s},
        }

    def cells(self) -> list[str]:
        share = self.fail_open_share
        return [
            self.name,
            number(self.rps),
            number(self.decided_per_s),
            number(self.p50_ms, 1),
            number(self.p99_ms, 1),
            str(self.non_2xx),
            str(self.socket_errors),
            "-" if share is None else f"{self.fail_open} ({share:.1%})",
        ]


@dataclass
class EdgeReport:
    """The part: its settings, notes on the machine it shared, every scenario's row."""

    settings: dict[str, Any]
    notes: dict[str, Any]
    rows: list[EdgeRow]

    def _row(self, side: str, path: str) -> EdgeRow | None:
        return next((row for row in self.rows if (row.side, row.path) == (side, path)), None)

    def ratios(self) -> dict[str, float | None]:
        """Ours over the baseline: requests/s on each path, and real decisions/s on the
        limited one; ``None`` when a side is missing or measured nothing."""

        def ratio(path: str, decided: bool = False) -> float | None:
            ours, base = self._row(OURS, path), self._row(BASELINE, path)
            if ours is None or base is None:
                return None
            top, bottom = (
                (ours.decided_per_s, base.decided_per_s) if decided else (ours.rps, base.rps)
            )
            return round(top / bottom, 3) if top is not None and bottom else None

        return {
            "limited_rps": ratio(LIMITED),
            "limited_decided": ratio(LIMITED, decided=True),
            "health_rps": ratio(HEALTH),
        }

    @property
    def failed(self) -> bool:
        """Whether a scenario had socket errors (in any round), non-2xx answers or no
        throughput."""
        return any(r.rps <= 0 or r.non_2xx or r.all_socket_errors for r in self.rows)

    def caveats(self) -> list[str]:
        """Why some numbers may not mean what they seem; empty when clean."""
        notes: list[str] = []
        for row in self.rows:
            if errors := row.all_socket_errors:
                notes.append(f"{row.name}: {errors} socket errors (refused, reset, timed out)")
            if row.non_2xx:
                notes.append(f"{row.name}: {row.non_2xx} non-2xx answers {row.statuses}")
            if row.rps <= 0:
                notes.append(f"{row.name}: no request completed in the measured window")
            share = row.fail_open_share
            if share is not None and share > _FAIL_OPEN_WARNING:
                notes.append(
                    f"{row.name}: {share:.1%} of the answers were fail-open (no decision "
                    "within the APIs' LIMITER_TIMEOUT_MS), not real decisions"
                )
            if note := others_note(row):
                notes.append(note)
        return notes

    def results_grid(self) -> Grid:
        return [_HEADER.split("|"), *(row.cells() for row in self.rows)]

    def cpu_grid(self) -> Grid:
        """CPU microseconds per request of each role in each scenario, then busy cores."""
        return cpu_grid(self.rows)

    def section(self) -> str:
        """The part as printed: settings, both tables, ratios, warnings, Markdown."""
        s, n, ratios = self.settings, self.notes, self.ratios()
        title = (
            f"\nEnd to end through Nginx: wrk -t{s['threads']} -c{s['connections']}, best of "
            f"{s['rounds']} x {s['duration_s']} s after {s['warmup_s']} s warm-up; "
            f"{s['policy']}; LIMITER_TIMEOUT_MS {s['limiter_timeout_ms']}; baseline: "
            f"{n['baseline']}.\n{n['cpu_count']} cores: {n['shared_cores']}; {n['client']}.\n"
        )
        lines = [
            f"\nours / baseline: /limited_endpoint {times(ratios['limited_rps'])} requests/s, "
            f"{times(ratios['limited_decided'])} real decisions/s; "
            f"/health {times(ratios['health_rps'])} requests/s"
        ]
        lines += [
            f"  {row.name}: {row.requests / row.redis_evalsha:.2f} requests per EVALSHA"
            for row in self.rows
            if row.redis_evalsha and row.path == LIMITED
        ]
        footnote = (
            f"\n{n['cpu_count']} cores shared by everything; wrk -t{s['threads']} "
            f"-c{s['connections']}, {s['duration_s']} s; ours / baseline on "
            f"/limited_endpoint: {times(ratios['limited_rps'])} requests/s. CPU is "
            "microseconds per completed request, per role; busy cores counts every process "
            "on the machine."
        )
        grids = [self.results_grid(), self.cpu_grid()]
        return section(title, grids, lines, self.caveats(), footnote)

    def to_json(self) -> dict[str, Any]:
        rows = [row.to_json() for row in self.rows]
        return {
            "settings": self.settings,
            "notes": self.notes,
            "scenarios": rows,
            "ratios": self.ratios(),
        }
