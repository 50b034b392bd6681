"""Unit: ``python -m bench``'s options."""

from __future__ import annotations

import dataclasses
import os

import pytest

from bench.options import (
    QUICK,
    AttackOptions,
    BenchOptions,
    ClusterOptions,
    EdgeOptions,
    parse_args,
)


def test_defaults_run_both_parts() -> None:
    assert parse_args([]) == BenchOptions()
    assert BenchOptions().edge == EdgeOptions()


def test_quick_shortens_everything_but_explicit_values_win() -> None:
    options = parse_args(["--quick", "--rounds=3", "--edge-duration=2"])
    assert options.quick and options.duration_s == QUICK.duration_s and options.rounds == 3
    assert options.edge == EdgeOptions(duration_s=2, warmup_s=1)


def test_edge_flags() -> None:
    assert parse_args(["--no-edge"]).edge is None
    only = parse_args(["--edge-only", "--edge-warmup=0", "--edge-limiter-timeout-ms=200"])
    assert not only.grpc and only.edge == EdgeOptions(warmup_s=0, limiter_timeout_ms=200)


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-edge", "--edge-only"],
        ["--edge-threads=8", "--edge-connections=4"],
        ["--duration=0"],
        ["--warmup=-1"],
        ["--keys=10", "--batch-size=20"],
        ["--batch-size=1001", "--keys=2000"],
        ["--concurrency=0"],
    ],
)
def test_invalid_options_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


def test_part_selection() -> None:
    only = parse_args(["--only=cluster,attack", "--cluster-primaries=1,2"])
    assert not only.grpc and only.edge is None
    assert only.cluster == ClusterOptions(primaries=(1, 2)) and only.attack == AttackOptions()
    skipped = parse_args(["--no-cluster", "--no-attack", "--attack-duration=3"])
    assert skipped.grpc and skipped.edge is not None
    assert skipped.cluster is None and skipped.attack is None
    assert parse_args(["--edge-only"]).cluster is None


def test_attack_pace_rounds_and_capacity_flags() -> None:
    defaults = AttackOptions()
    assert defaults.attacker_pace_ms == 1 and defaults.rounds == 3
    assert defaults.capacity_connections > 0
    given = parse_args(
        [
            "--only=attack",
            "--attack-attacker-pace-ms=0",
            "--attack-rounds=5",
            "--attack-capacity-connections=0",
        ]
    ).attack
    assert given == AttackOptions(attacker_pace_ms=0, rounds=5, capacity_connections=0)
    quick = parse_args(["--quick", "--only=attack"]).attack
    assert quick is not None and quick.rounds >= 2 and quick.attacker_pace_ms > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--attack-attacker-pace-ms=-1"],
        ["--attack-rounds=0"],
        ["--attack-capacity-connections=-1"],
        ["--attack-attacker-threads=2", "--attack-capacity-connections=1"],
        ["--only=grpc,nonsense"],
        ["--cluster-primaries=0,3"],
        ["--cluster-primaries=one"],
        ["--attack-attacker-threads=4", "--attack-attacker-connections=2"],
        # A well-behaved client at 30 req/s sends 1800 in a 60 s window: over the limit.
        ["--attack-good-rate=30", "--attack-rate-limit=1200"],
    ],
)
def test_invalid_part_options_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


def test_attack_pin_edge_flag() -> None:
    assert AttackOptions().pin_edge is False
    assert parse_args(["--only=attack"]).attack == AttackOptions()
    pinned = parse_args(["--only=attack", "--attack-pin-edge"]).attack
    if len(os.sched_getaffinity(0)) >= 2:
        assert pinned == AttackOptions(pin_edge=True)
    quick = parse_args(["--quick", "--only=attack", "--attack-pin-edge"]).attack
    assert quick == dataclasses.replace(QUICK.attack or AttackOptions(), pin_edge=True)


def test_attack_pin_edge_refused_on_one_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})  # this thread alone: what parse_args looks at
    try:
        with pytest.raises(SystemExit) as exited:
            parse_args(["--only=attack", "--attack-pin-edge"])
        # Without the attack part, pinning its edge asks nothing of the machine.
        assert parse_args(["--only=grpc", "--attack-pin-edge"]).attack is None
    finally:
        os.sched_setaffinity(0, before)
    assert exited.value.code == 2
    assert "--attack-pin-edge needs at least 2 CPUs" in capsys.readouterr().err


def test_attack_avoid_turnover_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert AttackOptions().avoid_turnover is True
    off = parse_args(["--only=attack", "--no-attack-avoid-turnover"]).attack
    assert off == AttackOptions(avoid_turnover=False)
    assert parse_args(["--only=attack", "--attack-avoid-turnover"]).attack == AttackOptions()
    quick = parse_args(["--quick", "--only=attack"]).attack
    assert quick is not None and quick.avoid_turnover
    # A phase as long as the window cannot keep clear of its boundaries: refused unless
    # the alignment is off.
    long = ["--only=attack", "--attack-duration=58", "--attack-warmup=2"]
    with pytest.raises(SystemExit) as exited:
        parse_args(long)
    assert exited.value.code == 2
    assert "--attack-avoid-turnover" in capsys.readouterr().err
    assert parse_args([*long, "--no-attack-avoid-turnover"]).attack is not None
