"""The one mapping from the limiter's gRPC statuses to the client's errors, by the rich
details (``BadRequest`` field, ``ErrorInfo`` reason) and never by the message text; and the
HTTP errors those become (no network: failures are built as ``RpcFailure``; see
``test_rich_errors`` for the same over the wire)."""

from __future__ import annotations

import grpc
import pytest

from ratelimit_client import FailureMode, InvalidKey, Misconfigured, Reason
from ratelimit_client.answers import Answers
from ratelimit_client.errors import OVERLOADED, RpcFailure, error_for_status
from ratelimit_client.fastapi import (
    InvalidRateLimitKey,
    LimiterUnavailable,
    RateLimitExceeded,
    RateLimitMisconfigured,
)

KEY_TOO_LONG = "key is 600 bytes; the maximum is 512"
UNKNOWN_POLICY = "unknown policy 'nope'; known policies: default"


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DATA_LOSS,
    ],
)
def test_limiter_failures_leave_it_to_the_failure_mode(code: grpc.StatusCode) -> None:
    assert error_for_status(RpcFailure(code, "whatever"), "default") is None
    # Whatever details come with it: the limiter could not decide.
    assert error_for_status(RpcFailure(code, KEY_TOO_LONG, ("key",), "INTERNAL"), "x") is None


@pytest.mark.parametrize("field", ["key", "requests[3].key"])
def test_a_key_field_violation_is_the_clients_fault(field: str) -> None:
    error = error_for_status(
        RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, KEY_TOO_LONG, (field,)), "default"
    )
    assert isinstance(error, InvalidKey)
    assert error.reason == KEY_TOO_LONG
    http = InvalidRateLimitKey(error.reason)
    assert http.status_code == 400
    assert http.body() == {"detail": f"invalid rate-limit key: {KEY_TOO_LONG}"}


@pytest.mark.parametrize(
    "fields",
    [(), ("cost",), ("requests",), ("monkey",), ("requests[1].cost",)],
    ids=["no-details", "cost", "requests", "monkey", "batch-cost"],
)
def test_a_message_about_the_key_without_a_key_violation_is_a_server_bug(
    fields: tuple[str, ...],
) -> None:
    error = error_for_status(
        RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, KEY_TOO_LONG, fields), "login"
    )
    assert isinstance(error, Misconfigured)
    assert not isinstance(error, InvalidKey)
    assert error.detail == "rate-limit policy 'login' refused the request"
    assert error.log_detail == f"INVALID_ARGUMENT: {KEY_TOO_LONG}"


def test_a_message_too_large_for_grpc_itself_is_the_clients_fault() -> None:
    # gRPC refuses an oversized message before the limiter sees it: no ErrorInfo reason.
    error = error_for_status(
        RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large"), "x"
    )
    assert isinstance(error, InvalidKey)
    assert InvalidRateLimitKey(error.reason).status_code == 400
    # The limiter's own RESOURCE_EXHAUSTED carries a reason: not the key's fault.
    quota = error_for_status(
        RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many", (), "SOME_LIMIT"), "x"
    )
    assert isinstance(quota, Misconfigured)


@pytest.mark.parametrize("mode", [FailureMode.OPEN, FailureMode.CLOSED])
def test_an_overloaded_limiter_leaves_it_to_the_failure_mode(mode: FailureMode) -> None:
    # The limiter shed the call unexamined: nothing is wrong with the key or the policy.
    failure = RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded: 1000 decision(s) in flight", (), OVERLOADED
    )
    assert error_for_status(failure, "default") is None
    decision = Answers(mode).failure(failure, "default")
    assert decision.reason is (Reason.FAIL_OPEN if mode is FailureMode.OPEN else Reason.FAIL_CLOSED)


def test_unknown_policy_is_a_server_bug() -> None:
    error = error_for_status(
        RpcFailure(grpc.StatusCode.NOT_FOUND, UNKNOWN_POLICY, (), "UNKNOWN_POLICY"), "nope"
    )
    assert isinstance(error, Misconfigured)
    http = RateLimitMisconfigured(error.detail, error.log_detail)
    assert http.status_code == 500
    assert http.body() == {
        "detail": "server misconfiguration: rate-limit policy 'nope' does not exist"
    }
    assert "known policies: default" in http.log_detail


@pytest.mark.parametrize(
    ("code", "details", "fields"),
    [
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "cost 5 exceeds the capacity 3 of policy 'x'",
            ("cost",),
        ),
        (grpc.StatusCode.UNIMPLEMENTED, "Method not found!", ()),
        (grpc.StatusCode.PERMISSION_DENIED, "no", ()),
    ],
)
def test_other_refusals_are_server_bugs(
    code: grpc.StatusCode, details: str, fields: tuple[str, ...]
) -> None:
    error = error_for_status(RpcFailure(code, details, fields), "x")
    assert isinstance(error, Misconfigured)
    assert details in error.log_detail
    assert details not in error.detail
    http = RateLimitMisconfigured(error.detail, error.log_detail)
    assert http.status_code == 500
    assert details not in str(http.body())


def test_retry_later_errors_carry_retry_after() -> None:
    exceeded = RateLimitExceeded("default", 0, {"RateLimit": '"default";r=0;t=1'})
    assert exceeded.status_code == 429
    assert exceeded.headers == {"Retry-After": "1", "RateLimit": '"default";r=0;t=1'}
    assert exceeded.body() == {"detail": "rate limit exceeded", "retry_after": 1}
    unavailable = LimiterUnavailable(3)
    assert unavailable.status_code == 503
    assert unavailable.headers == {"Retry-After": "3"}
    assert unavailable.body() == {"detail": "rate limiter unavailable", "retry_after": 3}
