"""Integration: ``python -m bench --edge-only`` in its shortest form, end to end through
real Nginx, API, limiter, ``limits`` baseline and Redis Sentinel processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.errors import DevstackError
from devstack.nginx import find_nginx


def _has_nginx() -> bool:
    try:
        find_nginx()
    except DevstackError:
        return False
    return True


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        None in (shutil.which(name) for name in ("redis-server", "redis-sentinel", "wrk"))
        or not _has_nginx(),
        reason="redis-server, redis-sentinel, wrk or nginx not installed",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
ROW_FIELDS = {
    "name",
    "side",
    "path",
    "rps",
    "decided_per_s",
    "p50_ms",
    "p99_ms",
    "non_2xx",
    "socket_errors",
    "fail_open",
    "fail_open_share",
    "statuses",
    "cpu_s",
    "cpu_us_per_request",
    "redis_evalsha",
}


def test_edge_section_measures_both_sides(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--edge-only",
            "--edge-duration=1",
            "--edge-warmup=0",
            f"--output={output}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| scenario |" in done.stdout  # the Markdown table
    assert "| CPU us/request |" in done.stdout

    results = json.loads(output.read_text())
    assert results["scenarios"] == []  # --edge-only: no gRPC scenario ran
    edge = results["edge"]
    assert edge["settings"]["duration_s"] == 1
    assert edge["notes"]["cpu_count"] >= 1
    rows = {row["name"]: row for row in edge["scenarios"]}
    assert set(rows) == {
        "ours /limited_endpoint",
        "baseline /limited_endpoint",
        "ours /health",
        "baseline /health",
    }
    for name, row in rows.items():
        assert not ROW_FIELDS - row.keys(), name
        assert row["rps"] > 0, name
        assert row["socket_errors"] == 0, (name, row)
        assert row["non_2xx"] == 0, (name, row["statuses"])
        assert row["p50_ms"] <= row["p99_ms"], name
        assert row["cpu_s"]["nginx"] > 0 and row["cpu_s"]["API replicas"] > 0, name

    ours, theirs = rows["ours /limited_endpoint"], rows["baseline /limited_endpoint"]
    assert isinstance(ours["fail_open"], int) and theirs["fail_open"] is None
    # Both sides counted in Redis: every decision went through an EVALSHA.
    assert ours["redis_evalsha"] > 0 and theirs["redis_evalsha"] > 0
    assert ours["cpu_s"]["limiters"] > 0
    assert edge["ratios"]["limited_rps"] > 0 and edge["ratios"]["health_rps"] > 0
