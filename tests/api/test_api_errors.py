"""The one mapping from the limiter's gRPC statuses to HTTP answers."""

from __future__ import annotations

import grpc
import pytest

from api.errors import (
    InvalidRateLimitKey,
    LimiterUnavailable,
    RateLimitExceeded,
    RateLimitMisconfigured,
    error_for_status,
)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    ],
)
def test_limiter_failures_leave_it_to_the_failure_mode(code: grpc.StatusCode) -> None:
    assert error_for_status(code, "whatever", "default") is None


def test_refused_key_is_the_clients_fault() -> None:
    error = error_for_status(
        grpc.StatusCode.INVALID_ARGUMENT, "key is 600 bytes; the maximum is 512", "default"
    )
    assert isinstance(error, InvalidRateLimitKey)
    assert error.status_code == 400
    assert error.body() == {
        "detail": "invalid rate-limit key: key is 600 bytes; the maximum is 512"
    }
    too_big = error_for_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large", "x")
    assert isinstance(too_big, InvalidRateLimitKey)


def test_unknown_policy_is_a_server_bug() -> None:
    error = error_for_status(
        grpc.StatusCode.NOT_FOUND, "unknown policy 'nope'; known policies: default", "nope"
    )
    assert isinstance(error, RateLimitMisconfigured)
    assert error.status_code == 500
    assert error.body() == {
        "detail": "server misconfiguration: rate-limit policy 'nope' does not exist"
    }
    assert "known policies: default" in error.log_detail


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "cost 5 exceeds the capacity 3 of policy 'x'"),
        (grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
        (grpc.StatusCode.PERMISSION_DENIED, "no"),
    ],
)
def test_other_refusals_are_server_bugs(code: grpc.StatusCode, details: str) -> None:
    error = error_for_status(code, details, "x")
    assert isinstance(error, RateLimitMisconfigured)
    assert details in error.log_detail
    assert details not in str(error.detail)


def test_retry_later_errors_carry_retry_after() -> None:
    exceeded = RateLimitExceeded("default", 0, {"RateLimit": '"default";r=0;t=1'})
    assert exceeded.status_code == 429
    assert exceeded.headers == {"Retry-After": "1", "RateLimit": '"default";r=0;t=1'}
    assert exceeded.body() == {"detail": "rate limit exceeded", "retry_after": 1}
    unavailable = LimiterUnavailable(3)
    assert unavailable.status_code == 503
    assert unavailable.headers == {"Retry-After": "3"}
    assert unavailable.body() == {"detail": "rate limiter unavailable", "retry_after": 3}
