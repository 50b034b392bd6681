"""Unit: the end-to-end part's wrk parsing, rows, ratios and verdict; no processes."""

from __future__ import annotations

import json

import pytest

from bench.edge.limits_app import storage_uri
from bench.edge.report import BASELINE, HEALTH, LIMITED, OURS, EdgeReport, EdgeRow
from devstack.wrk import parse_wrk_report as parse_report


def _wrk_output(**overrides: object) -> str:
    data: dict[str, object] = {
        "statuses": {"200": 900, "429": 100},
        "missing_ratelimit": 45,
        "requests": 1000,
        "duration_us": 2_000_000,
        "bytes": 123,
        "connect": 0,
        "read": 1,
        "write": 0,
        "timeout": 2,
        "status_errors": 100,
        "p50_us": 1500,
        "p90_us": 3000,
        "p99_us": 9000,
        "max_us": 20000,
    }
    data.update(overrides)
    return "Running 2s test\nWRK_RESULT " + json.dumps(data) + "\n"


def test_wrk_output_without_report_is_refused() -> None:
    with pytest.raises(ValueError, match="WRK_RESULT"):
        parse_report("Running 2s test\n")


def test_row_from_wrk_report() -> None:
    row = EdgeRow.from_wrk(BASELINE, LIMITED, parse_report(_wrk_output()), (2.0, {}), 7)
    assert row.rps == 500 and row.decided_per_s == 500
    assert row.statuses == {200: 900, 429: 100} and row.non_2xx == 100
    assert row.socket_errors == 3
    assert (row.p50_ms, row.p90_ms, row.p99_ms) == (1.5, 3.0, 9.0)
    assert row.to_json()["statuses"] == {"200": 900, "429": 100}


def _row(side: str, path: str, requests: int = 1000, missing: int = 45) -> EdgeRow:
    report = parse_report(
        _wrk_output(
            requests=requests,
            missing_ratelimit=missing,
            statuses={"200": requests},
            read=0,
            timeout=0,
        )
    )
    cpu = (2.0, {"nginx": 0.1, "wrk": 0.2, "others": 0.2})
    return EdgeRow.from_wrk(side, path, report, cpu, 250)


def test_fail_open_is_counted_on_our_limited_path_only() -> None:
    ours = _row(OURS, LIMITED)
    assert ours.fail_open == 45 and ours.fail_open_share == pytest.approx(0.045)
    assert ours.decided_per_s == pytest.approx((1000 - 45) / 2)
    theirs = _row(BASELINE, LIMITED)
    assert theirs.fail_open is None and theirs.decided_per_s == 500
    assert _row(OURS, HEALTH).fail_open is None and _row(OURS, HEALTH).decided_per_s is None
    assert ours.cpu_us_per_request("nginx") == 100.0
    assert ours.cpu_us_per_request("limiters") is None


def test_ratios_are_ours_over_the_baseline() -> None:
    rows = [
        _row(OURS, LIMITED, requests=800, missing=0),
        _row(BASELINE, LIMITED, requests=1000),
        _row(OURS, HEALTH),
    ]
    report = EdgeReport({}, {}, rows)
    ratios = report.ratios()
    assert ratios == {"limited_rps": 0.8, "limited_decided": 0.8, "health_rps": None}
    assert report.to_json()["ratios"] == ratios
    assert report.results_grid()[0][:2] == ["scenario", "req/s"]
    cpu = report.cpu_grid()
    assert [line[0] for line in cpu] == ["CPU us/request", "nginx", "wrk", "others", "busy cores"]
    assert cpu[-1][1:] == ["0.25"] * 3  # 0.5 CPU seconds over a 2 s window


def test_errors_fail_the_part() -> None:
    clean = EdgeReport({}, {}, [_row(BASELINE, HEALTH)])
    assert not clean.failed and not clean.caveats()
    report = parse_report(_wrk_output())  # 429s and socket errors
    broken = EdgeReport({}, {}, [EdgeRow.from_wrk(OURS, LIMITED, report, (2.0, {}), None)])
    assert broken.failed
    notes = broken.caveats()
    assert any("socket errors" in note for note in notes)
    assert any("fail-open" in note for note in notes)


def test_storage_uri_encodes_the_password() -> None:
    assert storage_uri("h:1,h:2", "mymaster", "") == "async+redis+sentinel://h:1,h:2/mymaster"
    assert storage_uri("h:1", "m", "p@ss/w") == "async+redis+sentinel://:p%40ss%2Fw@h:1/m"
