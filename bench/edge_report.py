"""Results of the edge section: one row per scenario, the ours / baseline ratios, tables.

A row is one path (``/limited_endpoint`` or ``/health``) through one side's Nginx: ``ours``
(APIs asking our limiters over gRPC) or ``baseline`` (APIs limiting in-process with
``limits``). ``fail_open`` is only counted where it means something: on our limited path,
where a 200 without a ``RateLimit`` header was let through by the failure mode rather than
decided (the baseline sends no such header; when it cannot reach Redis it answers 500,
which shows in ``non_2xx``). ``decided_per_s`` is the rate of real decisions: counted 200s
plus 429s; ``None`` on ``/health``, which is not limited.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.edge_cpu import OTHERS
from bench.edge_wrk import WrkResult

__all__ = ["BASELINE", "HEALTH", "LIMITED", "OURS", "EdgeReport", "EdgeRow", "markdown", "plain"]

OURS = "ours"
BASELINE = "baseline"
LIMITED = "/limited_endpoint"
HEALTH = "/health"

_FAIL_OPEN_WARNING = 0.001
_OTHERS_WARNING = 0.25


@dataclass
class EdgeRow:
    """One scenario's fastest round. Rates per second, latencies in ms; ``cpu_s`` is CPU
    seconds per role over the measured ``window_s``; ``redis_evalsha`` the ``EVALSHA``
    calls the Redis master served meanwhile (``None``: not read)."""

    side: str
    path: str
    rps: float
    decided_per_s: float | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    statuses: dict[int, int]
    non_2xx: int
    socket_errors: int
    fail_open: int | None
    window_s: float
    cpu_s: dict[str, float]
    redis_evalsha: int | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.side} {self.path}"

    @property
    def fail_open_share(self) -> float | None:
        """Fraction of the answers that the failure mode gave; ``None`` where not counted."""
        if self.fail_open is None:
            return None
        return self.fail_open / self.requests if self.requests else 0.0

    @classmethod
    def from_wrk(
        cls,
        side: str,
        path: str,
        result: WrkResult,
        window_s: float,
        cpu_s: dict[str, float],
        redis_evalsha: int | None,
    ) -> EdgeRow:
        """A row from what wrk counted (fail-opens: the 200s lacking ``RateLimit`` on our
        limited path)."""
        fail_open = result.missing_ratelimit if (side, path) == (OURS, LIMITED) else None
        decided: float | None = None
        if path == LIMITED and result.duration_s > 0:
            counted = result.statuses.get(200, 0) - (fail_open or 0)
            decided = round((counted + result.statuses.get(429, 0)) / result.duration_s, 1)
        return cls(
            side=side,
            path=path,
            rps=round(result.rps, 1),
            decided_per_s=decided,
            p50_ms=result.p50_ms,
            p90_ms=result.p90_ms,
            p99_ms=result.p99_ms,
            requests=result.requests,
            statuses=dict(result.statuses),
            non_2xx=result.non_2xx,
            socket_errors=result.socket_errors,
            fail_open=fail_open,
            window_s=window_s,
            cpu_s=cpu_s,
            redis_evalsha=redis_evalsha,
        )

    def cpu_us_per_request(self, role: str) -> float | None:
        """CPU microseconds ``role`` spent per completed request; ``None`` if not measured."""
        seconds = self.cpu_s.get(role)
        if seconds is None or self.requests <= 0:
            return None
        # wrk measures requests over its own duration, the CPU window spans the same run.
        return round(seconds * 1e6 / self.requests, 1)


@dataclass
class EdgeReport:
    """The section: its settings, the machine it shared, and every scenario's row."""

    settings: dict[str, Any]
    notes: dict[str, Any]
    rows: list[EdgeRow]

    def row(self, side: str, path: str) -> EdgeRow | None:
        for row in self.rows:
            if (row.side, row.path) == (side, path):
                return row
        return None

    def ratios(self) -> dict[str, float | None]:
        """Ours over the baseline: requests/s on each path, and real decisions/s on the
        limited one; ``None`` when a side is missing or measured nothing."""

        def ratio(path: str, decided: bool = False) -> float | None:
            ours, base = self.row(OURS, path), self.row(BASELINE, path)
            if ours is None or base is None:
                return None
            top = ours.decided_per_s if decided else ours.rps
            bottom = base.decided_per_s if decided else base.rps
            if top is None or not bottom:
                return None
            return round(top / bottom, 3)

        return {
            "limited_rps": ratio(LIMITED),
            "limited_decided": ratio(LIMITED, decided=True),
            "health_rps": ratio(HEALTH),
        }

    def caveats(self) -> list[str]:
        """Why some numbers may not mean what they seem; empty when clean."""
        notes: list[str] = []
        for row in self.rows:
            errors = sum(r["socket_errors"] for r in row.rounds) or row.socket_errors
            if errors:
                notes.append(f"{row.name}: {errors} socket errors (refused, reset, timed out)")
            if row.non_2xx:
                notes.append(f"{row.name}: {row.non_2xx} non-2xx answers {row.statuses}")
            if row.rps <= 0:
                notes.append(f"{row.name}: no request completed in the measured window")
            share = row.fail_open_share
            if share is not None and share > _FAIL_OPEN_WARNING:
                notes.append(
                    f"{row.name}: {share:.1%} of the answers were fail-open (no decision "
                    f"within the APIs' LIMITER_TIMEOUT_MS), not real decisions"
                )
            others = row.cpu_s.get(OTHERS, 0.0) / row.window_s if row.window_s > 0 else 0.0
            if others > _OTHERS_WARNING:
                notes.append(f"{row.name}: other processes used {others:.2f} cores meanwhile")
        return notes

    @property
    def failed(self) -> bool:
        """Whether a scenario had socket errors, non-2xx answers or no throughput."""
        return any(
            row.rps <= 0
            or row.non_2xx
            or row.socket_errors
            or any(r["socket_errors"] for r in row.rounds)
            for row in self.rows
        )

    def roles(self) -> list[str]:
        """Every CPU role of any row, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row.cpu_s))
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            data = asdict(row)
            data["name"] = row.name
            data["fail_open_share"] = row.fail_open_share
            data["statuses"] = {str(k): v for k, v in sorted(row.statuses.items())}
            data["cpu_us_per_request"] = {r: row.cpu_us_per_request(r) for r in row.cpu_s}
            rows.append(data)
        return {
            "settings": self.settings,
            "notes": self.notes,
            "scenarios": rows,
            "ratios": self.ratios(),
        }

    # -- tables ----------------------------------------------------------------------

    def results_grid(self) -> list[list[str]]:
        """Header and one line per row: the results table."""
        grid = [
            [
                "scenario",
                "req/s",
                "decided/s",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "socket errors",
                "fail-open",
            ]
        ]
        for row in self.rows:
            share = row.fail_open_share
            grid.append(
                [
                    row.name,
                    _number(row.rps),
                    _number(row.decided_per_s),
                    _number(row.p50_ms, 1),
                    _number(row.p99_ms, 1),
                    str(row.non_2xx),
                    str(row.socket_errors),
                    "-" if share is None else f"{row.fail_open} ({share:.1%})",
                ]
            )
        return grid

    def cpu_grid(self) -> list[list[str]]:
        """Header and one line per role: CPU microseconds per request in each scenario,
        then the cores the machine kept busy."""
        grid = [["CPU us/request", *(row.name for row in self.rows)]]
        for role in self.roles():
            grid.append([role, *(_number(row.cpu_us_per_request(role), 0) for row in self.rows)])
        grid.append(["busy cores", *(_number(_busy_cores(row), 2) for row in self.rows)])
        return grid


def _busy_cores(row: EdgeRow) -> float | None:
    return sum(row.cpu_s.values()) / row.window_s if row.window_s > 0 else None


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def plain(grid: list[list[str]]) -> str:
    """Columns aligned with spaces: the first left, the others right."""
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    lines = []
    for index, line in enumerate(grid):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(grid: list[list[str]]) -> str:
    """A GitHub Markdown table: the first column left-aligned, the others right."""
    header, *body = grid
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *("---:" for _ in header[1:])]) + "|",
    ]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)
