"""Unit: the edge section's parsing, rows, ratios and options; no processes, no network."""

from __future__ import annotations

import json

import pytest

from bench.edge_report import BASELINE, HEALTH, LIMITED, OURS, EdgeReport, EdgeRow, markdown
from bench.edge_wrk import WrkResult
from bench.limits_app import storage_uri
from bench.options import parse_args


def _wrk_line(**overrides: object) -> str:
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


def test_wrk_report_is_parsed() -> None:
    result = WrkResult.parse(_wrk_line(), cpu_s=0.5)
    assert result.rps == 500
    assert result.statuses == {200: 900, 429: 100}
    assert result.non_2xx == 100
    assert result.socket_errors == 3
    assert (result.p50_ms, result.p99_ms) == (1.5, 9.0)


def test_wrk_output_without_report_is_refused() -> None:
    with pytest.raises(ValueError, match="WRK_RESULT"):
        WrkResult.parse("Running 2s test\n", cpu_s=0.0)


def _row(side: str, path: str, requests: int = 1000, missing: int = 45) -> EdgeRow:
    result = WrkResult.parse(
        _wrk_line(
            requests=requests,
            missing_ratelimit=missing,
            statuses={"200": requests},
            read=0,
            timeout=0,
        ),
        cpu_s=0.2,
    )
    return EdgeRow.from_wrk(side, path, result, 2.0, {"nginx": 0.1, "wrk": 0.2}, 250)


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
    assert ratios["limited_rps"] == 0.8
    assert ratios["limited_decided"] == 0.8
    assert ratios["health_rps"] is None  # no baseline /health row
    assert report.to_json()["ratios"] == ratios
    assert markdown(report.results_grid()).startswith("| scenario | req/s |")


def test_errors_fail_the_section() -> None:
    clean = EdgeReport({}, {}, [_row(BASELINE, HEALTH)])
    assert not clean.failed
    result = WrkResult.parse(_wrk_line(), cpu_s=0.0)  # 429s and socket errors
    broken = EdgeReport({}, {}, [EdgeRow.from_wrk(OURS, LIMITED, result, 2.0, {}, None)])
    assert broken.failed
    assert any("socket errors" in note for note in broken.caveats())


def test_storage_uri_encodes_the_password() -> None:
    assert storage_uri("h:1,h:2", "mymaster", "") == "async+redis+sentinel://h:1,h:2/mymaster"
    assert storage_uri("h:1", "m", "p@ss/w") == "async+redis+sentinel://:p%40ss%2Fw@h:1/m"


def test_edge_flags() -> None:
    assert parse_args([]).edge is not None and parse_args([]).grpc
    assert parse_args(["--no-edge"]).edge is None
    only = parse_args(["--edge-only", "--edge-duration=3"])
    assert not only.grpc and only.edge is not None and only.edge.duration_s == 3
    quick = parse_args(["--quick"]).edge
    assert quick is not None and quick.duration_s == 1
    with pytest.raises(SystemExit):
        parse_args(["--no-edge", "--edge-only"])
    with pytest.raises(SystemExit):
        parse_args(["--edge-threads=8", "--edge-connections=4"])
