"""Outages are logged once per burst, with summaries and a recovery line."""

from __future__ import annotations

import logging

import pytest

from ratelimit_client.outage import ErrorLog, OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_one_line_per_outage_plus_summaries_and_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ratelimit_client")
    clock = Clock()
    outages = OutageLog("open", summary_every_s=10, quiet_s=1, clock=clock)
    for _ in range(1000):
        outages.failed("UNAVAILABLE: refused")
    assert _messages(caplog) == ["rate limiter unavailable, failing open: UNAVAILABLE: refused"]
    clock.now += 10
    outages.failed("DEADLINE_EXCEEDED: late")
    assert _messages(caplog)[-1] == (
        "rate limiter still unavailable, failing open: 1000 request(s) in the last 10 s; "
        "last cause: DEADLINE_EXCEEDED: late"
    )
    clock.now += 2.5
    outages.recovered()
    outages.recovered()
    assert _messages(caplog)[-1] == (
        "rate limiter answering again; the outage lasted 10.0 s and 1001 request(s) failed open"
    )
    assert len(caplog.records) == 3
    assert outages.total == 1001
    outages.failed("again")
    assert len(caplog.records) == 4


def test_a_flapping_limiter_is_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ratelimit_client")
    clock = Clock()
    outages = OutageLog("closed", summary_every_s=10, quiet_s=1, clock=clock)
    for _ in range(50):  # fails, answers, fails... every 100 ms for 5 s
        outages.failed("DEADLINE_EXCEEDED")
        clock.now += 0.05
        outages.recovered()
        clock.now += 0.05
    assert outages.in_outage
    assert len(caplog.records) == 1
    clock.now += 1
    outages.recovered()
    assert not outages.in_outage
    assert _messages(caplog)[-1].endswith("50 request(s) failed closed")


def test_error_log_repeats_a_message_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    errors = ErrorLog(every_s=60, clock=clock)
    assert errors.error("bad policy") is True
    assert errors.error("bad policy") is False
    assert errors.error("other") is True
    clock.now += 60
    assert errors.error("bad policy") is True
    assert _messages(caplog) == ["bad policy", "other", "bad policy"]
