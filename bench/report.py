"""Results of a bench run: one row per scenario, ratios to the baselines, tables and JSON.

A gRPC row is compared with the echo baseline of the same batch size, and every row with
the ``redis-benchmark`` row of the same batch size, always in decisions per second (a ratio
of 0.25 means a quarter of the baseline's throughput). A ratio is ``None`` when there is no
such baseline or the row is that baseline. On a shared machine the rates move with
other load; CPU per decision does not, hence ``cpu_vs_echo``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.edge_report import EdgeReport

__all__ = ["BenchReport", "Kind", "ScenarioResult", "markdown_table", "plain_table"]


class Kind(enum.StrEnum):
    """What produced a row: the subject, or one of the two baselines."""

    LIMITER = "limiter"
    ECHO = "echo"
    REDIS_BENCHMARK = "redis-benchmark"


@dataclass
class ScenarioResult:
    """One measured scenario. Rates are per second, latencies in ms per call (a batch is
    one call). ``fail_open`` counts decisions the failure mode answered (reasons FAIL_OPEN
    and FAIL_CLOSED). ``server_cpu_us`` and ``redis_cpu_us`` are CPU microseconds per
    decision spent by the server under test and by redis-server (``None``: not measured).
    ``others_cores`` is the CPU (in cores) that processes outside the bench used meanwhile."""

    name: str
    kind: Kind
    batch_size: int
    calls_per_s: float
    decisions_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    server_cpu_us: float | None = None
    redis_cpu_us: float | None = None
    loadgen_cpu_us: float | None = None
    others_cores: float | None = None
    vs_echo: float | None = None
    vs_redis_benchmark: float | None = None
    cpu_vs_echo: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def fail_open(self) -> int:
        return self.reasons.get("REASON_FAIL_OPEN", 0) + self.reasons.get("REASON_FAIL_CLOSED", 0)

    @property
    def fail_open_share(self) -> float:
        """Fraction of decisions answered by the failure mode (0 when none were counted)."""
        total = sum(self.reasons.values())
        return self.fail_open / total if total else 0.0


def _ratio(value: float, baseline: ScenarioResult | None, row: ScenarioResult) -> float | None:
    if baseline is None or baseline is row or baseline.decisions_per_s <= 0:
        return None
    return round(value / baseline.decisions_per_s, 3)


@dataclass
class BenchReport:
    """A whole run: the machine, the settings used, every gRPC/Redis scenario's row, and
    the end-to-end section (``None`` when it did not run)."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    scenarios: list[ScenarioResult]
    edge: EdgeReport | None = None

    def compute_ratios(self) -> None:
        """Fill ``vs_echo``, ``vs_redis_benchmark`` and ``cpu_vs_echo`` of every row.

        ``cpu_vs_echo`` is the echo server's CPU per decision over this server's: the
        throughput ratio one core would give, whatever else ran on the machine.
        """
        for row in self.scenarios:
            echo = self._baseline(Kind.ECHO, row.batch_size)
            bench = self._baseline(Kind.REDIS_BENCHMARK, row.batch_size)
            if row.kind is not Kind.REDIS_BENCHMARK:
                row.vs_echo = _ratio(row.decisions_per_s, echo, row)
                if (
                    echo is not None
                    and echo is not row
                    and echo.server_cpu_us
                    and row.server_cpu_us
                ):
                    row.cpu_vs_echo = round(echo.server_cpu_us / row.server_cpu_us, 3)
            row.vs_redis_benchmark = _ratio(row.decisions_per_s, bench, row)

    def _baseline(self, kind: Kind, batch_size: int) -> ScenarioResult | None:
        for row in self.scenarios:
            if row.kind is kind and row.batch_size == batch_size:
                return row
        return None

    def to_json(self) -> dict[str, Any]:
        rows = []
        for row in self.scenarios:
            data = asdict(row)
            data["kind"] = row.kind.value
            data["error_count"] = row.error_count
            data["fail_open"] = row.fail_open
            rows.append(data)
        return {
            "machine": self.machine,
            "settings": self.settings,
            "scenarios": rows,
            "edge": self.edge.to_json() if self.edge is not None else None,
        }

    def write(self, path: Path) -> None:
        """Write ``to_json()`` to ``path`` (indented, trailing newline), creating parents."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


_HEADERS = (
    "scenario",
    "calls/s",
    "decisions/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "fail-open",
    "vs echo",
    "vs redis-bench",
    "server CPU us/dec",
    "redis CPU us/dec",
    "others' CPU",
)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cells(row: ScenarioResult) -> list[str]:
    return [
        row.name,
        _number(row.calls_per_s),
        _number(row.decisions_per_s),
        _number(row.p50_ms, 2),
        _number(row.p99_ms, 2),
        str(row.error_count),
        f"{row.fail_open_share:.1%}" if row.kind is not Kind.REDIS_BENCHMARK else "-",
        _number(row.vs_echo, 2),
        _number(row.vs_redis_benchmark, 2),
        _number(row.server_cpu_us, 1),
        _number(row.redis_cpu_us, 1),
        _number(row.others_cores, 2),
    ]


def plain_table(report: BenchReport) -> str:
    """Columns aligned with spaces, scenario names left, numbers right."""
    grid = [list(_HEADERS), *(_cells(row) for row in report.scenarios)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(_HEADERS))]
    lines = []
    for index, line in enumerate(grid):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(report: BenchReport) -> str:
    """A GitHub Markdown table of the same columns, numbers right-aligned."""
    lines = [
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "|".join([":---", *("---:" for _ in _HEADERS[1:])]) + "|",
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in report.scenarios]
    return "\n".join(lines)
