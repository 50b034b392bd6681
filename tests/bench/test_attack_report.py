"""Unit: the under-attack part's client addresses, tallies, rows and verdicts; no processes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.attack.clients import GoodTally, client_addresses
from bench.attack.report import ALLOWED_MARK, ATTACK, CALM, CAPACITY, AttackReport, AttackRow, pool
from bench.edge.report import BASELINE, OURS


def test_client_addresses_stay_on_loopback() -> None:
    assert client_addresses(3) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        client_addresses(3, first="127.255.255.254")


def _good(p99_us: int, limited: int = 0) -> GoodTally:
    tally = GoodTally(duration_s=10.0, statuses=Counter({200: 100, 429: limited}))
    tally.latencies_us = [1000] * 99 + [p99_us]
    return tally


def _attacker(requests: int, denied: int, pace_ms: int = 0) -> dict[str, Any]:
    return {
        "requests": requests,
        "duration_us": 10_000_000,
        "statuses": {"429": denied, "200": requests - denied},
        "pace_ms": pace_ms,
        "p99_us": 900,
        **{kind: 0 for kind in ("connect", "read", "write", "timeout")},
    }


def _row(side: str, phase: str, **kwargs: Any) -> AttackRow:
    defaults: dict[str, Any] = {
        "window_s": 10.0,
        "good": _good(5000),
        "commands": {"evalsha": 120, "hset": 400, "ping": 10},
        "background_per_s": {"evalsha": 2.0, "ping": 1.0},
        "cpu_s": {},
        "attacker": None,
    }
    return AttackRow(side, phase, **{**defaults, **kwargs})


def test_row_figures_are_net_of_the_idle_background() -> None:
    cpu = {"nginx": 1.0, "API replicas": 2.0, "others": 5.0, "wrk": 1.0, "bench": 0.2}
    row = _row(OURS, ATTACK, attacker=_attacker(9_900, 9_800), cpu_s=cpu)
    assert row.requests == 10_000 and row.rps == 1_000.0
    assert row.attacker_share == pytest.approx(0.99)
    # EVALSHA: 120 less 2/s over 10 s; all commands: 530 less 30.
    assert row.evalsha_per_request == 0.01
    assert row.commands_per_request == 0.05
    assert row.good.percentile_ms(99) == 1.0 and row.good.percentile_ms(100) == 5.0
    # Only the side's own processes: not the load generators nor the rest of the machine.
    assert row.serving_cpu_us == 300.0


def test_verdicts_hold_ours_to_the_targets() -> None:
    rows = [
        _row(OURS, CALM, good=_good(4000)),
        _row(BASELINE, CALM),
        _row(OURS, ATTACK, attacker=_attacker(29_900, 29_000), good=_good(3000)),
        _row(BASELINE, ATTACK, attacker=_attacker(9_900, 9_000)),
    ]
    report = AttackReport({}, {}, rows)
    verdicts = report.verdicts()
    assert verdicts["rps_vs_baseline"] == 3.0 and verdicts["rps_vs_baseline_met"]
    assert verdicts["calls_per_request"] == pytest.approx(0.0033, abs=1e-4)
    assert verdicts["calls_per_request_met"]
    # p99 of 100 samples is the 99th: 1 ms under attack and calm alike.
    assert verdicts["good_p99_met"] and not report.failed


def test_a_denied_good_client_or_an_undenied_attacker_fails_the_part() -> None:
    denied_good = [_row(OURS, CALM, good=_good(1000, limited=1))]
    assert AttackReport({}, {}, denied_good).failed
    never_denied = [_row(OURS, ATTACK, attacker=_attacker(100, 0))]
    assert AttackReport({}, {}, never_denied).failed
    assert any("no 429" in note for note in AttackReport({}, {}, never_denied).caveats())


def _good_ms(*latencies_ms: float) -> GoodTally:
    tally = GoodTally(duration_s=10.0, statuses=Counter({200: len(latencies_ms)}))
    tally.latencies_us = [int(ms * 1000) for ms in latencies_ms]
    return tally


def test_pool_adds_rounds_up_and_pools_latencies() -> None:
    first = _row(
        OURS,
        ATTACK,
        round=1,
        good=_good_ms(*[1.0] * 99, 50.0),
        attacker=_attacker(1_000, 900, pace_ms=1),
        attacker_connections=2,
        cpu_s={"nginx": 1.0},
    )
    second = _row(
        OURS,
        ATTACK,
        round=2,
        good=_good_ms(*[2.0] * 100),
        attacker=_attacker(3_000, 3_000, pace_ms=1),
        attacker_connections=2,
        cpu_s={"nginx": 0.5, "wrk": 0.5},
    )
    pooled = pool([first, second])
    assert pooled.round is None and pooled.window_s == 20.0
    assert pooled.good.duration_s == 20.0 and pooled.good.requests == 200
    # 200 samples: the p99 is the 198th, a 2 ms one; one round's 50 ms outlier is the max.
    assert pooled.good.percentile_ms(99) == 2.0 and pooled.good.percentile_ms(100) == 50.0
    assert first.good.percentile_ms(100) == 50.0
    assert pooled.attacker is not None and pooled.attacker_requests == 4_000
    assert pooled.attacker_status(429) == 3_900 and pooled.attacker_rps == 200.0
    assert "p99_us" not in pooled.attacker  # percentiles do not add up
    assert pooled.pace_ms == 1 and pooled.attacker_ceiling_rps == 2_000.0
    assert pooled.commands["evalsha"] == 240 and pooled.cpu_s == {"nginx": 1.5, "wrk": 0.5}
    with pytest.raises(ValueError, match="one side and phase"):
        pool([first, _row(OURS, CALM)])
    with pytest.raises(ValueError, match="one side and phase"):
        pool([])


def _rounds(calm_outliers_ms: list[float], attack_outliers_ms: list[float]) -> list[AttackRow]:
    """Rounds of both sides, in which the good clients see 98 answers in 1 ms and two
    in that round's outlier: the round's p99 (100 samples: the 99th)."""
    rows = []
    pairs = zip(calm_outliers_ms, attack_outliers_ms, strict=True)
    for n, (calm, attack) in enumerate(pairs, 1):
        for side, attacker in ((OURS, 20_000), (BASELINE, 5_000)):
            rows.append(_row(side, CALM, round=n, good=_good_ms(*[1.0] * 98, calm, calm)))
            rows.append(
                _row(
                    side,
                    ATTACK,
                    round=n,
                    good=_good_ms(*[1.0] * 98, attack, attack),
                    attacker=_attacker(attacker, attacker, pace_ms=1),
                    attacker_connections=32,
                )
            )
    return rows


def test_verdicts_pool_the_rounds_and_show_each() -> None:
    rows = _rounds([8.0, 30.0, 1.0], [3.0, 3.0, 3.0])
    capacity = [
        _row(OURS, CAPACITY, round=1, attacker=_attacker(70_000, 70_000), attacker_connections=4),
        _row(BASELINE, CAPACITY, round=1, attacker=_attacker(4_000, 4_000), attacker_connections=4),
    ]
    report = AttackReport({}, {}, rows + capacity)
    assert [r.name for r in report.pooled_rows()] == [
        "ours, calm",
        "baseline, calm",
        "ours, attack",
        "baseline, attack",
        "ours, capacity",
        "baseline, capacity",
    ]
    v = report.verdicts()
    assert v["good_p99_calm_by_round_ms"] == [8.0, 30.0, 1.0]
    assert v["good_p99_attack_by_round_ms"] == [3.0, 3.0, 3.0]
    # Pooled, 300 samples: the p99 is the 297th, which one noisy round cannot set alone:
    # 296 are at most 1 ms, then 8, 8, 30, 30.
    assert v["good_p99_calm_ms"] == 8.0 and v["good_p99_attack_ms"] == 3.0
    assert v["good_p99_attack_vs_calm"] == 0.375 and v["good_p99_met"]
    assert v["baseline_good_p99_attack_vs_calm"] == 0.375
    assert v["good_p99_calm_round_median_ms"] == 8.0
    assert v["good_p99_attack_round_median_ms"] == 3.0
    assert v["rps_vs_baseline"] == pytest.approx(2_010 / 510, abs=1e-3)
    assert v["rps_vs_baseline_met"]
    assert v["capacity_rps_vs_baseline"] == pytest.approx(7_010 / 410, abs=1e-3)
    assert v["capacity_rps_vs_baseline_met"] and not report.failed
    grid = report.rounds_grid()
    assert [line[0] for line in grid] == ["round", "1", "2", "3", "pooled"]
    assert grid[0][1:3] == ["ours calm p99 ms", "ours attack p99 ms"]
    assert grid[2][1:3] == ["30.0", "3.0"] and grid[4][1:3] == ["8.0", "3.0"]
    assert grid[1][5:] == ["2,010", "510"] and grid[4][5:] == ["2,010", "510"]


def test_a_round_whose_attacker_was_allowed_some_is_marked() -> None:
    rows = _rounds([1.0, 1.0], [3.0, 40.0])
    # Round 2, ours: the attacker's window turned over, its allowance went through.
    turned = next(r for r in rows if (r.side, r.phase, r.round) == (OURS, ATTACK, 2))
    assert turned.attacker is not None
    turned.attacker["statuses"] = {"429": 18_800, "200": 1_200}
    grid = AttackReport({}, {}, rows).rounds_grid()
    assert grid[1][2] == "3.0" and grid[2][2] == "40.0" + ALLOWED_MARK
    assert grid[2][4] == "40.0"  # the baseline's attacker was denied throughout


def test_a_worse_pooled_p99_under_attack_is_missed() -> None:
    v = AttackReport({}, {}, _rounds([1.0] * 3, [1.0, 20.0, 20.0])).verdicts()
    assert v["good_p99_attack_ms"] == 20.0 and v["good_p99_calm_ms"] == 1.0
    assert v["good_p99_attack_vs_calm"] == 20.0 and v["good_p99_met"] is False


def test_a_paced_attacker_over_its_pace_fails_the_part() -> None:
    # Two connections 1 ms apart send at most 2,000 requests/s: 2,500/s means no pacing.
    row = _row(OURS, ATTACK, attacker=_attacker(25_000, 25_000, pace_ms=1), attacker_connections=2)
    report = AttackReport({}, {}, [row])
    assert row.attacker_ceiling_rps == 2_000.0 and report.failed
    assert any("over the 2,000 its pace allows" in note for note in report.caveats())
    within = _row(OURS, ATTACK, attacker=_attacker(19_000, 19_000, pace_ms=1))
    within.attacker_connections = 2
    assert not AttackReport({}, {}, [within]).failed
    # Closed loop: no ceiling.
    closed = _row(OURS, CAPACITY, attacker=_attacker(900_000, 900_000), attacker_connections=2)
    assert closed.attacker_ceiling_rps is None and not AttackReport({}, {}, [closed]).failed


def _settings(**pinning: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = {
        "capacity_connections": 0,
        "attacker_pace_ms": 1,
        "attacker_max_rps": 32_000,
        "attacker_threads": 1,
        "attacker_connections": 32,
        "good_clients": 10,
        "good_rate": 10.0,
        "policy": "fixed window",
        "rounds": 3,
        "duration_s": 8,
        "warmup_s": 2,
        **pinning,
    }
    notes = {
        "cpu_count": 2,
        "good_sources": "127.0.0.2..127.0.0.11",
        "attacker_source": "127.0.0.1",
        "ours": "ours",
        "baseline": "theirs",
        "background_commands_per_s": {},
    }
    return settings, notes


def test_the_footnote_says_where_a_pinned_run_ran() -> None:
    rows = _rounds([1.0] * 3, [1.0] * 3)
    shared = AttackReport(*_settings(), rows).section()
    assert "2 cores shared by every process" in shared and "pinned" not in shared
    pinned = AttackReport(*_settings(pin_edge=True, edge_cpus=[1], other_cpus=[0]), rows)
    text = pinned.section()
    assert "edge (Nginx + attacker) on CPU 1, everything else" in text
    assert "on CPUs 0;" in text and "shared by every process" not in text


def test_waits_for_a_window_boundary_are_recorded_and_told() -> None:
    rows = [
        _row(OURS, ATTACK, attacker=_attacker(1000, 1000), round=1, aligned_wait_s=3.25),
        _row(OURS, ATTACK, attacker=_attacker(1000, 1000), round=2, aligned_wait_s=1.5),
        _row(OURS, CALM, round=1),
    ]
    assert [row.to_json()["aligned_wait_s"] for row in rows] == [3.25, 1.5, 0.0]
    assert pool(rows[:2]).aligned_wait_s == 4.75
    aligned = AttackReport(*_settings(avoid_turnover=True), rows).section()
    assert "just after a window boundary" in aligned and "waited 4.8 s in all" in aligned
    unaligned = AttackReport(*_settings(avoid_turnover=False), rows).section()
    assert "window boundary" not in unaligned
