"""Integration: ``python -m bench`` in its shortest forms, end to end on real processes.

One test per part: the gRPC / Redis part (redis-server, the echo server, the limiter,
redis-benchmark), the end-to-end part (Nginx, API, limiter, ``limits`` baseline and a
Redis Sentinel set), the cluster part (the limiter on Redis Clusters of 1 and 3 primaries)
and the under-attack part (both end-to-end sides, well-behaved clients and one attacker).
Each asserts the figures the README quotes are there and sane, never how fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.errors import DevstackError
from devstack.nginx import find_nginx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _missing(*binaries: str) -> bool:
    return None in (shutil.which(name) for name in binaries)


def _no_nginx() -> bool:
    try:
        find_nginx()
    except DevstackError:
        return True
    return False


def _bench(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """Run the bench with ``args``; its stdout and its JSON results. Fails the test unless
    it exits 0 (every scenario measured something, without errors)."""
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, f"--output={output}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(output.read_text())
    return done.stdout, results


@pytest.mark.skipif(_missing("redis-server", "redis-benchmark"), reason="no redis tools")
def test_grpc_part_measures_every_scenario(tmp_path: Path) -> None:
    stdout, results = _bench(tmp_path, "--quick", "--only=grpc")
    assert "| scenario | calls/s |" in stdout  # the Markdown table
    assert results["edge"] is None
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["redis_server"]
    rows = {row["name"]: row for row in results["scenarios"]}
    assert list(rows) == [
        "echo ShouldAllow",
        "echo ShouldAllowBatch x100",
        "limiter/memory ShouldAllow",
        "limiter/redis ShouldAllow",
        "limiter/redis ShouldAllowBatch x100",
        "limiter/redis ShouldRateLimit, 1 descriptor",
        "limiter/redis ShouldRateLimit, 3 descriptors",
        "limiter/redis, metrics off ShouldAllow",
        "limiter/redis, metrics off ShouldAllowBatch x100",
        "echo, 8 connections ShouldAllow",  # --quick's concurrency
        "limiter/redis, 1 worker ShouldAllow",
        "limiter/redis, 2 workers ShouldAllow",
        "redis-benchmark EVALSHA fixed_window.lua, 1 key",
        "redis-benchmark EVALSHA fixed_window.lua, 100 keys",
    ]
    for name, row in rows.items():
        assert row["decisions_per_s"] > 0 and row["calls_per_s"] > 0, name
        assert row["error_count"] == 0, (name, row["errors"])
        assert 0 < row["p50_ms"] <= row["p99_ms"], name
        assert row["others_cores"] is not None, name
        grpc = row["kind"] != "redis-benchmark"
        assert (row["server_cpu_us"] is not None) == grpc, name
        assert (row["vs_echo"] is not None) == (row["kind"] == "limiter"), name

    for name in ("echo ShouldAllowBatch x100", "limiter/redis ShouldAllowBatch x100"):
        assert rows[name]["decisions_per_s"] == pytest.approx(100 * rows[name]["calls_per_s"])
    for descriptors in (1, 3):
        row = rows[
            f"limiter/redis ShouldRateLimit, {descriptors} descriptor" + "s" * (descriptors > 1)
        ]
        assert row["decisions_per_s"] == pytest.approx(descriptors * row["calls_per_s"])
        assert set(row["reasons"]) == {"OK"}
        assert row["redis_cpu_us"] > 0
    decided = rows["limiter/redis ShouldAllow"]
    assert set(decided["reasons"]) == {"REASON_WITHIN_LIMIT"}
    assert decided["redis_cpu_us"] > 0 and decided["cpu_vs_echo"] > 0
    assert decided["vs_redis_benchmark"] is not None
    assert rows["limiter/redis ShouldAllowBatch x100"]["raw"]["decisions_per_evalsha"] >= 1
    assert rows["redis-benchmark EVALSHA fixed_window.lua, 1 key"]["redis_cpu_us"] > 0
    # What metrics cost per decision: recorded in-process, and both limiters' CPU.
    cost = results["metrics_cost"]
    assert set(cost) == {"ShouldAllow", "ShouldAllowBatch x100"}
    for method, figures in cost.items():
        assert 0 < figures["recording_us_per_decision"] < figures["server_cpu_us_per_decision"]
        assert figures["server_cpu_us_without_metrics"] > 0, method
        assert figures["within_budget"], (method, figures)
    assert "metrics, ShouldAllow: recording" in stdout
    # One limiter and then two workers, side by side; with two, both answered calls.
    scaling = results["workers_scaling"]
    assert set(scaling) == {"1", "2"} and scaling["1"]["vs_one_worker"] == 1.0
    assert scaling["2"]["vs_one_worker"] > 0
    two = rows["limiter/redis, 2 workers ShouldAllow"]["raw"]
    assert two["server_processes"] == 3 and two["connections"] == 8  # --quick's concurrency
    # (the kernel spreads connections at random: which worker gets how many varies)
    assert len(two["rpcs_by_worker"]) == 2 and sum(two["rpcs_by_worker"]) > 0
    assert "2 worker(s):" in stdout
    # The workers rows against the echo over as many connections, the others against the
    # echo over one.
    echo_1, echo_8 = rows["echo ShouldAllow"], rows["echo, 8 connections ShouldAllow"]
    assert echo_1["raw"]["connections"] == 1 and echo_8["raw"]["connections"] == 8
    for name, echo in (
        ("limiter/redis ShouldAllow", echo_1),
        ("limiter/redis, 1 worker ShouldAllow", echo_8),
        ("limiter/redis, 2 workers ShouldAllow", echo_8),
    ):
        ratio = round(rows[name]["decisions_per_s"] / echo["decisions_per_s"], 3)
        assert rows[name]["vs_echo"] == ratio, name
    one = rows["limiter/redis, 1 worker ShouldAllow"]
    assert scaling["1"]["vs_echo"] == one["vs_echo"]
    assert scaling["1"]["echo"] == "echo, 8 connections ShouldAllow"
    assert "x echo, 8 connections ShouldAllow's (same connections)" in stdout


@pytest.mark.skipif(
    _missing("redis-server", "redis-sentinel", "wrk") or _no_nginx(),
    reason="redis-server, redis-sentinel, wrk or nginx not installed",
)
def test_edge_part_measures_both_sides(tmp_path: Path) -> None:
    args = ("--edge-only", "--edge-duration=1", "--edge-warmup=0")
    stdout, results = _bench(tmp_path, *args)
    assert "| scenario | req/s |" in stdout and "| CPU us/request |" in stdout
    assert results["scenarios"] == []  # --edge-only: no gRPC scenario ran
    edge = results["edge"]
    assert edge["settings"]["duration_s"] == 1
    rows = {row["name"]: row for row in edge["scenarios"]}
    assert list(rows) == [
        "ours /limited_endpoint",
        "baseline /limited_endpoint",
        "ours /health",
        "baseline /health",
    ]
    for name, row in rows.items():
        assert row["rps"] > 0, name
        assert row["socket_errors"] == 0 and row["non_2xx"] == 0, (name, row["statuses"])
        assert row["p50_ms"] <= row["p99_ms"], name
        assert row["cpu_s"]["nginx"] > 0 and row["cpu_s"]["API replicas"] > 0, name
        assert row["cpu_us_per_request"]["wrk"] > 0, name

    ours, theirs = rows["ours /limited_endpoint"], rows["baseline /limited_endpoint"]
    assert isinstance(ours["fail_open"], int) and theirs["fail_open"] is None
    assert ours["decided_per_s"] > 0 and theirs["decided_per_s"] > 0
    # Both sides counted in Redis: every decision went through an EVALSHA.
    assert ours["redis_evalsha"] > 0 and theirs["redis_evalsha"] > 0
    assert ours["cpu_s"]["limiters"] > 0
    assert edge["ratios"]["limited_rps"] > 0 and edge["ratios"]["health_rps"] > 0


@pytest.mark.skipif(_missing("redis-server", "redis-cli"), reason="no redis tools")
def test_cluster_part_decides_on_both_topologies(tmp_path: Path) -> None:
    stdout, results = _bench(tmp_path, "--quick", "--only=cluster", "--duration=0.5")
    assert "| scenario | decisions/s | vs 1 primary |" in stdout
    assert results["scenarios"] == [] and results["edge"] is None and results["attack"] is None
    rows = {row["name"]: row for row in results["cluster"]["scenarios"]}
    assert list(rows) == [
        "cluster, 1 primary ShouldAllow",
        "cluster, 1 primary ShouldAllowBatch x100",
        "cluster, 3 primaries ShouldAllow",
        "cluster, 3 primaries ShouldAllowBatch x100",
    ]
    for name, row in rows.items():
        size = row["primaries"]
        assert row["decisions_per_s"] > 0 and row["error_count"] == 0, (name, row)
        assert set(row["reasons"]) == {"REASON_WITHIN_LIMIT"}, name
        assert row["replicas"] == size, name  # one replica per primary
        # Every primary served its share of the keys, and was measured.
        assert len(row["nodes"]) == size, name
        assert all(node["evalsha"] > 0 for node in row["nodes"]), (name, row["nodes"])
        assert row["limiter_cpu_us"] > 0 and row["redis_cpu_us"] > 0, name
    assert rows["cluster, 1 primary ShouldAllow"]["vs_smallest"] == 1.0
    assert rows["cluster, 3 primaries ShouldAllow"]["vs_smallest"] > 0


@pytest.mark.skipif(
    _missing("redis-server", "redis-sentinel", "wrk") or _no_nginx(),
    reason="redis-server, redis-sentinel, wrk or nginx not installed",
)
def test_attack_part_denies_the_attacker_and_counts_redis_commands(tmp_path: Path) -> None:
    stdout, results = _bench(tmp_path, "--quick", "--only=attack")
    assert "| scenario | req/s | attacker share |" in stdout and "targets (ours" in stdout
    assert "| round | ours calm p99 ms |" in stdout
    attack = results["attack"]
    settings = attack["settings"]
    rounds, connections = settings["rounds"], settings["attacker_connections"]
    pace_ms = settings["attacker_pace_ms"]
    assert rounds >= 2 and pace_ms >= 1 and settings["capacity_connections"] >= 1
    assert settings["pin_edge"] is False and settings["edge_cpus"] is None
    assert attack["notes"]["pinned_threads"] is None and "shared by every process" in stdout
    rows = {row["name"]: row for row in attack["scenarios"]}
    assert list(rows) == [
        "ours, calm",
        "baseline, calm",
        "ours, attack",
        "baseline, attack",
        "ours, capacity",
        "baseline, capacity",
    ]
    for name, row in rows.items():
        good = row["good"]
        assert good["requests"] > 0 and good["statuses"].get("429", 0) == 0, (name, good)
        assert good["latency_ms"]["p99"] > 0, name
        assert row["commands_per_request"] is not None, name
        assert row["evalsha_per_request"] is not None, name
        assert (row["attacker"] is None) == (row["phase"] == "calm"), name
    # Every round measured both sides calm and under the paced attack, in the order run:
    # sides interleaved, phases alternating; then one closed-loop capacity phase per side.
    measured = [(row["round"], row["side"], row["phase"]) for row in attack["rounds"]]
    expected = []
    for n in range(1, rounds + 1):
        phases = ("calm", "attack") if n % 2 else ("attack", "calm")
        expected += [(n, side, phase) for side in ("ours", "baseline") for phase in phases]
    expected += [(1, side, "capacity") for side in ("ours", "baseline")]
    assert measured == expected
    # Calm phases never wait for a window boundary; with the attacker, any boundary that
    # would have fallen in the phase was waited out, so the attacker's allowance went in the
    # warm-up and the measured window saw no attacker 200s (no * in the rounds table).
    assert settings["avoid_turnover"] is True and "window boundary" in stdout
    for row in attack["rounds"]:
        where = (row["round"], row["side"], row["phase"])
        assert row["good"]["requests"] > 0, where
        assert row["aligned_wait_s"] >= 0, where
        if row["phase"] == "calm":
            assert row["aligned_wait_s"] == 0, where
        else:
            assert row["attacker"]["statuses"].get("200", 0) == 0, where
        if row["phase"] == "attack":
            # wrk ran paced: it says so, and N connections each waiting pace_ms after every
            # answer cannot send more than N * 1000 / pace_ms requests per second (a bound
            # that holds on any machine; closed loop, either side answers far more).
            assert row["attacker"]["pace_ms"] == pace_ms, where
            assert row["attacker_connections"] == connections, where
            seconds = row["attacker"]["duration_us"] / 1e6
            assert row["attacker"]["requests"] / seconds <= connections * 1000 / pace_ms, where
        elif row["phase"] == "capacity":
            assert row["attacker"]["pace_ms"] == 0, where
            assert row["attacker_connections"] == settings["capacity_connections"], where
    for side in ("ours", "baseline"):
        for phase in ("attack", "capacity"):
            row = rows[f"{side}, {phase}"]
            assert row["attacker"]["statuses"].get("429", 0) > 0, (side, phase)
            assert row["attacker_share"] > 0.5, (side, phase)
    # Every baseline request costs a round trip to Redis; ours answers the attacker from the
    # deny caches, without one.
    assert rows["baseline, attack"]["evalsha_per_request"] > 0.5
    assert (
        rows["ours, attack"]["evalsha_per_request"]
        < rows["baseline, attack"]["evalsha_per_request"]
    )
    verdicts = attack["verdicts"]
    assert verdicts["rps_vs_baseline"] > 0 and verdicts["capacity_rps_vs_baseline"] > 0
    assert verdicts["good_p99_calm_ms"] > 0 and verdicts["good_p99_attack_vs_calm"] > 0
    assert len(verdicts["good_p99_calm_by_round_ms"]) == rounds
