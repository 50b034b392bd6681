"""Integration: ``python -m bench --quick --no-edge`` end to end on real redis-server
processes (the end-to-end section has its own test, ``test_edge_smoke``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
        reason="redis-server / redis-benchmark not installed",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_FIELDS = {
    "name",
    "kind",
    "batch_size",
    "calls_per_s",
    "decisions_per_s",
    "p50_ms",
    "p99_ms",
    "errors",
    "error_count",
    "reasons",
    "fail_open",
    "vs_echo",
    "vs_redis_benchmark",
    "server_cpu_us",
    "redis_cpu_us",
}


def test_quick_bench_measures_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-edge", f"--output={output}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| scenario |" in done.stdout  # the Markdown table

    results = json.loads(output.read_text())
    assert results["edge"] is None
    assert results["machine"]["cpu_count"] >= 1
    assert results["settings"]["concurrency"] >= 1
    rows = {row["name"]: row for row in results["scenarios"]}
    assert {row["kind"] for row in rows.values()} == {"echo", "limiter", "redis-benchmark"}
    assert len(rows) == 7
    for name, row in rows.items():
        assert not SCENARIO_FIELDS - row.keys(), name
        assert row["decisions_per_s"] > 0, name
        assert row["calls_per_s"] > 0, name
        assert row["error_count"] == 0, (name, row["errors"])
        assert row["p50_ms"] is not None and row["p50_ms"] <= row["p99_ms"], name

    decided = rows["limiter/redis ShouldAllow"]
    assert decided["reasons"].get("REASON_WITHIN_LIMIT", 0) > 0
    assert decided["vs_echo"] is not None and decided["vs_redis_benchmark"] is not None
    assert rows["limiter/redis ShouldAllowBatch x100"]["raw"]["decisions_per_evalsha"] >= 1
