"""Unit: the under-attack part's client addresses, tallies, rows and verdicts; no processes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.attack.clients import GoodTally, client_addresses
from bench.attack.report import ATTACK, CALM, AttackReport, AttackRow
from bench.edge.report import BASELINE, OURS


def test_client_addresses_stay_on_loopback() -> None:
    assert client_addresses(3) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        client_addresses(3, first="127.255.255.254")


def _good(p99_us: int, limited: int = 0) -> GoodTally:
    tally = GoodTally(duration_s=10.0, statuses=Counter({200: 100, 429: limited}))
    tally.latencies_us = [1000] * 99 + [p99_us]
    return tally


def _attacker(requests: int, denied: int) -> dict[str, Any]:
    return {
        "requests": requests,
        "duration_us": 10_000_000,
        "statuses": {"429": denied, "200": requests - denied},
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
