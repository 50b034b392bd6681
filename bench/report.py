"""Results of a bench run: one row per gRPC / Redis scenario, ratios to the baselines, the
printed section and the JSON.

A gRPC row is compared with the echo row of the same batch size measured over as many
connections (``raw["connections"]``, 1 when absent: gRPC spends more per call over many
connections than over one, so a row is never compared with an echo row laid out
differently), and every row with the ``redis-benchmark`` row of the same batch size, in
decisions per second (0.25: a quarter of the baseline's throughput); ``None`` when there is
no such baseline or the row is it. A row of a size no baseline has (``ShouldRateLimit``
with 3 descriptors: one call, three decisions) is compared with the single-call baselines.
On a shared machine the rates move with other load; CPU per decision does not, hence
``cpu_vs_echo``: the echo server's CPU per decision over this server's. ``metrics_cost``
is what the limiter's metrics cost per decision (``bench.metrics_cost``).
``workers_scaling`` sets the rows of one limiter run with several ``LIMITER_WORKERS`` side
by side: each one's decisions per second over the one-worker row's, and over the echo
row's of the same connections (``vs_echo``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.metrics_cost import BUDGET
from bench.table import Grid, number, section

if TYPE_CHECKING:  # these import this module: a runtime import would be circular
    from bench.attack.report import AttackReport
    from bench.cluster import ClusterReport
    from bench.edge.report import EdgeReport

__all__ = ["BenchReport", "Kind", "ScenarioResult"]

_FAIL_OPEN_WARNING = 0.001
_BUSY_WARNING = 0.25
_OTHERS_WARNING = 0.25


class Kind(enum.StrEnum):
    """What produced a row: the subject, or one of the two baselines."""

    LIMITER = "limiter"
    ECHO = "echo"
    REDIS_BENCHMARK = "redis-benchmark"


@dataclass
class ScenarioResult:
    """One scenario's fastest round. Rates per second, latencies in ms per call (a batch is
    one call); ``errors`` and ``reasons`` are summed over every round. ``*_cpu_us`` are CPU
    microseconds per decision of the server under test, redis-server and the load
    generator (``None``: not measured); ``others_cores`` the cores' worth of CPU that
    processes outside the scenario used meanwhile."""

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
        """Decisions the failure mode answered (reasons FAIL_OPEN and FAIL_CLOSED)."""
        return self.reasons.get("REASON_FAIL_OPEN", 0) + self.reasons.get("REASON_FAIL_CLOSED", 0)

    @property
    def fail_open_share(self) -> float:
        total = sum(self.reasons.values())
        return self.fail_open / total if total else 0.0

    def cells(self) -> list[str]:
        return [
            self.name,
            number(self.calls_per_s),
            number(self.decisions_per_s),
            number(self.p50_ms, 2),
            number(self.p99_ms, 2),
            str(self.error_count),
            "-" if self.kind is Kind.REDIS_BENCHMARK else f"{self.fail_open_share:.1%}",
            number(self.vs_echo, 2),
            number(self.vs_redis_benchmark, 2),
            number(self.server_cpu_us, 1),
            number(self.redis_cpu_us, 1),
            number(self.others_cores, 2),
        ]


_HEADER = "scenario|calls/s|decisions/s|p50 ms|p99 ms|errors|fail-open|vs echo|vs redis-bench|"
_HEADER += "server CPU us/dec|redis CPU us/dec|others' CPU"


@dataclass
class BenchReport:
    """A whole run: the machine, the settings, every gRPC / Redis row, the end-to-end
    part, the metrics' cost per method (``bench.metrics_cost.metrics_cost``; empty when
    not measured), the cluster part and the under-attack part (each ``None`` when it did
    not run)."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    scenarios: list[ScenarioResult]
    edge: EdgeReport | None = None
    metrics_cost: dict[str, Any] = field(default_factory=dict)
    cluster: ClusterReport | None = None
    attack: AttackReport | None = None

    def compute_ratios(self) -> None:
        """Fill ``vs_echo``, ``vs_redis_benchmark`` and ``cpu_vs_echo`` of every row."""
        for row in self.scenarios:
            echo = self._baseline(Kind.ECHO, row)
            bench = self._baseline(Kind.REDIS_BENCHMARK, row)
            if echo is not None and row.kind is not Kind.REDIS_BENCHMARK:
                row.vs_echo = _ratio(row.decisions_per_s, echo.decisions_per_s)
                if echo.server_cpu_us and row.server_cpu_us:
                    row.cpu_vs_echo = _ratio(echo.server_cpu_us, row.server_cpu_us)
            if bench is not None:
                row.vs_redis_benchmark = _ratio(row.decisions_per_s, bench.decisions_per_s)

    def _baseline(self, kind: Kind, row: ScenarioResult) -> ScenarioResult | None:
        """The first ``kind`` row of ``row``'s batch size (else of size 1); an echo
        baseline also over as many connections as ``row``."""
        candidates = {
            r.batch_size: r
            for r in reversed(self.scenarios)
            if r.kind is kind and (kind is not Kind.ECHO or _connections(r) == _connections(row))
        }
        baseline = candidates.get(row.batch_size, candidates.get(1))
        return None if baseline is row else baseline

    @property
    def failed(self) -> bool:
        """Whether a scenario had errors or no throughput (the other parts: see their
        reports' ``failed``)."""
        bad = any(row.error_count or row.decisions_per_s <= 0 for row in self.scenarios)
        parts = (self.edge, self.cluster, self.attack)
        return bad or any(part is not None and part.failed for part in parts)

    def caveats(self) -> list[str]:
        """Why some numbers may not mean what they seem; empty when clean."""
        notes: list[str] = []
        for row in self.scenarios:
            if row.error_count:
                notes.append(f"{row.name}: {row.error_count} failed calls {row.errors}")
            if row.decisions_per_s <= 0:
                notes.append(f"{row.name}: no successful call in the measured window")
            if row.kind is not Kind.REDIS_BENCHMARK and row.fail_open_share > _FAIL_OPEN_WARNING:
                notes.append(
                    f"{row.name}: {row.fail_open_share:.1%} of decisions came from the failure "
                    "mode (no answer from Redis within the limiter's timeouts), so its rate is "
                    "not a real result"
                )
            if (row.others_cores or 0) > _OTHERS_WARNING:
                notes.append(f"{row.name}: other processes used {row.others_cores} cores meanwhile")
        for method, cost in self.metrics_cost.items():
            if not cost["within_budget"]:
                notes.append(
                    f"metrics cost {cost['share']:.1%} of a {method} decision's CPU, over the "
                    f"{BUDGET:.0%} budget"
                )
        busy = self.machine.get("cpu_busy_before_start")
        if busy is not None and busy > _BUSY_WARNING:
            notes.append(
                f"other processes kept {busy:.0%} of the CPU busy before the bench started: "
                "numbers are noisy"
            )
        return notes

    def workers_scaling(self) -> dict[str, Any]:
        """Rows measured with ``raw["workers"]`` set: per worker count, decisions/s, the
        ratio to one worker, the ratio to the echo row over the same connections
        (``vs_echo``, that row's name in ``echo``; ``None`` without one), server CPU per
        decision, and the cores the load generator
        and others used meanwhile (the load generator shares the machine); empty when no
        such rows ran."""
        rows = {row.raw["workers"]: row for row in self.scenarios if "workers" in row.raw}
        one = rows.get(1)
        echoes = {workers: self._baseline(Kind.ECHO, row) for workers, row in rows.items()}
        return {
            str(workers): {
                "decisions_per_s": row.decisions_per_s,
                "vs_one_worker": _ratio(row.decisions_per_s, one.decisions_per_s)
                if one is not None
                else None,
                "vs_echo": None
                if (echo := echoes[workers]) is None
                else _ratio(row.decisions_per_s, echo.decisions_per_s),
                "echo": None if echo is None else echo.name,
                "server_cpu_us": row.server_cpu_us,
                "loadgen_cores": None
                if row.loadgen_cpu_us is None
                else round(row.loadgen_cpu_us * row.decisions_per_s / 1e6, 2),
                "others_cores": row.others_cores,
                "rpcs_by_worker": row.raw.get("rpcs_by_worker", []),
            }
            for workers, row in sorted(rows.items())
        }

    def grid(self) -> Grid:
        return [_HEADER.split("|"), *(row.cells() for row in self.scenarios)]

    def section(self) -> str:
        """The gRPC / Redis part as printed: settings, the table, per-row notes, warnings,
        the Markdown table."""
        m, s = self.machine, self.settings
        title = (
            f"\n{m['cpu_count']} cores ({m['cpu_model']}), concurrency {s['concurrency']} "
            f"(batches: {s['batch_concurrency']}), best of {s['rounds']} x {s['duration_s']} s "
            f"measured after {s['warmup_s']} s warm-up, {s['keys']} keys, batch "
            f"{s['batch_size']}, redis {m['redis_server']}"
        )
        notes = [
            f"  {row.name}: {row.cpu_vs_echo:.2f} x echo's decisions per server CPU second"
            for row in self.scenarios
            if row.cpu_vs_echo is not None
        ]
        notes += [
            f"  {row.name}: {row.raw['decisions_per_evalsha']} decisions per EVALSHA round "
            f"trip, {row.raw['redis_connections_opened']} Redis connections opened"
            for row in self.scenarios
            if row.raw.get("decisions_per_evalsha") is not None
        ]
        notes += [
            f"  metrics, {method}: recording {cost['recording_us_per_decision']:.2f} us of "
            f"{cost['server_cpu_us_per_decision']} us per decision ({cost['share']:.2%}); "
            f"server CPU with / without metrics {cost['server_cpu_us_per_decision']} / "
            f"{cost['server_cpu_us_without_metrics']} us"
            for method, cost in self.metrics_cost.items()
        ]
        notes += [
            f"  {workers} worker(s): {figures['decisions_per_s']:,.0f} decisions/s = "
            f"{figures['vs_one_worker']} x one worker's = {figures['vs_echo']} x "
            f"{figures['echo']}'s (same connections); server CPU "
            f"{figures['server_cpu_us']} us per decision; the load generator kept "
            f"{figures['loadgen_cores']} cores busy"
            for workers, figures in self.workers_scaling().items()
        ]
        footnote = (
            f"\n{m['cpu_count']} cores, concurrency {s['concurrency']} (batches: "
            f"{s['batch_concurrency']}), best of {s['rounds']} x {s['duration_s']} s per "
            "scenario; ratios are decisions/s over the baseline's; CPU is per decision; "
            "others' CPU is what other processes used meanwhile, in cores."
        )
        return section(title, [self.grid()], notes, self.caveats(), footnote)

    def to_json(self) -> dict[str, Any]:
        rows = [
            {**asdict(row), "error_count": row.error_count, "fail_open": row.fail_open}
            for row in self.scenarios
        ]
        edge = self.edge.to_json() if self.edge is not None else None
        return {
            "machine": self.machine,
            "settings": self.settings,
            "scenarios": rows,
            "metrics_cost": self.metrics_cost,
            "workers_scaling": self.workers_scaling(),
            "edge": edge,
            "cluster": self.cluster.to_json() if self.cluster is not None else None,
            "attack": self.attack.to_json() if self.attack is not None else None,
        }

    def write(self, path: Path) -> None:
        """Write ``to_json()`` to ``path`` (indented, trailing newline), creating parents."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _connections(row: ScenarioResult) -> int:
    """The connections a row's load went over (1: not recorded)."""
    return int(row.raw.get("connections", 1))


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline > 0 else None
