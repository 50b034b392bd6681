"""Unit: the gRPC / Redis part's ratios, warnings and tables."""

from __future__ import annotations

from bench.report import BenchReport, Kind, ScenarioResult
from bench.table import markdown, plain


def _row(name: str, kind: Kind, batch: int, rate: float, cpu_us: float | None) -> ScenarioResult:
    return ScenarioResult(name, kind, batch, rate / batch, rate, 1.0, 2.0, server_cpu_us=cpu_us)


def _report() -> BenchReport:
    rows = [
        _row("echo", Kind.ECHO, 1, 2000, 500.0),
        _row("echo batch", Kind.ECHO, 100, 100_000, 10.0),
        _row("limiter", Kind.LIMITER, 1, 1000, 1000.0),
        _row("limiter batch", Kind.LIMITER, 100, 25_000, 40.0),
        _row("redis-benchmark", Kind.REDIS_BENCHMARK, 100, 50_000, None),
    ]
    report = BenchReport({"cpu_count": 2}, {}, rows)
    report.compute_ratios()
    return report


def test_ratios_compare_rows_with_baselines_of_their_batch_size() -> None:
    echo, echo_batch, single, batch, redis = _report().scenarios
    assert (single.vs_echo, single.cpu_vs_echo, single.vs_redis_benchmark) == (0.5, 0.5, None)
    assert (batch.vs_echo, batch.cpu_vs_echo, batch.vs_redis_benchmark) == (0.25, 0.25, 0.5)
    assert echo.vs_echo is None and echo_batch.vs_redis_benchmark == 2.0
    assert redis.vs_redis_benchmark is None and redis.vs_echo is None


def test_errors_and_fail_open_answers_are_reported() -> None:
    report = _report()
    assert not report.failed and not report.caveats()
    row = report.scenarios[2]
    row.errors = {"DEADLINE_EXCEEDED": 3}
    row.reasons = {"REASON_WITHIN_LIMIT": 90, "REASON_FAIL_OPEN": 10}
    assert report.failed
    notes = report.caveats()
    assert any("3 failed calls" in note for note in notes)
    assert any("10.0% of decisions came from the failure mode" in note for note in notes)
    assert report.to_json()["scenarios"][2]["fail_open"] == 10


def test_tables_align_and_render_markdown() -> None:
    grid = _report().grid()
    lines = plain(grid).splitlines()
    assert len({len(line) for line in lines}) == 1  # every line as wide
    assert lines[1].startswith("-") and lines[4].startswith("limiter ")
    table = markdown(grid).splitlines()
    assert table[0].startswith("| scenario | calls/s |") and table[1].startswith("|:---|---:|")
    assert table[4] == (
        "| limiter | 1,000 | 1,000 | 1.00 | 2.00 | 0 | 0.0% | 0.50 | - | 1,000.0 | - | - |"
    )


def test_workers_rows_are_compared_with_the_echo_over_as_many_connections() -> None:
    rows = [
        _row("echo", Kind.ECHO, 1, 2000, 500.0),
        _row("limiter", Kind.LIMITER, 1, 1000, 1000.0),
        _row("echo, 16 connections", Kind.ECHO, 1, 1600, 800.0),
        _row("limiter, 1 worker", Kind.LIMITER, 1, 1200, 1000.0),
        _row("limiter, 2 workers", Kind.LIMITER, 1, 2400, 1000.0),
    ]
    rows[0].raw["connections"] = rows[1].raw["connections"] = 1
    for workers, row in enumerate(rows[2:]):
        row.raw["connections"] = 16
        if workers:
            row.raw["workers"] = workers
    report = BenchReport({"cpu_count": 2}, {}, rows)
    report.compute_ratios()
    echo, single, echo_16, one, two = report.scenarios
    assert echo.vs_echo is None and echo_16.vs_echo is None  # each its own layout's baseline
    assert (single.vs_echo, single.cpu_vs_echo) == (0.5, 0.5)  # against the 1-connection echo
    assert (one.vs_echo, one.cpu_vs_echo) == (0.75, 0.8)  # against the 16-connection echo
    assert two.vs_echo == 1.5
    scaling = report.workers_scaling()
    assert scaling["1"]["vs_echo"] == 0.75 and scaling["2"]["vs_echo"] == 1.5
    assert scaling["1"]["echo"] == "echo, 16 connections"
    assert scaling["2"]["vs_one_worker"] == 2.0
    # No echo row over those connections: no ratio, rather than one to another layout.
    del report.scenarios[2]
    assert report.workers_scaling()["1"]["vs_echo"] is None
