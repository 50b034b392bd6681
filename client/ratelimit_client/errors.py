"""Every error the client raises, and the one place where the limiter's gRPC statuses
become them (``error_for_status``).

The tree::

    RateLimitClientError           base
    ├── InvalidKey                 the limiter refused the key (empty, oversized, not UTF-8);
    │                              the FastAPI integration answers 400
    ├── Misconfigured              a server-side mistake: unknown policy, cost above the
    │                              policy's capacity, LIMITER_ADDR not a ratelimit.v1
    │                              service; the FastAPI integration answers 500
    └── ResetFailed                ``reset`` could not reach the limiter or its backend in
                                   time (a decision would get the failure mode instead)
    ConfigError (settings)         invalid client settings, naming the env var

The limiter attaches the ``google.rpc`` rich error model to its errors: a ``BadRequest``
whose field violations name the refused field (``key``, ``cost``, ``requests[3].key``),
or an ``ErrorInfo`` with a reason code (``UNKNOWN_POLICY``, ...). The mapping reads those
details, never the message text. A status the limiter sends when it could not decide
(unavailable, late, crashed, or overloaded: ``RESOURCE_EXHAUSTED`` with the reason
``OVERLOADED``) maps to ``None``: the failure mode answers instead.
"""

from __future__ import annotations

from typing import NamedTuple

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "ERROR_DOMAIN",
    "OVERLOADED",
    "InvalidKey",
    "Misconfigured",
    "RateLimitClientError",
    "ResetFailed",
    "RpcFailure",
    "error_for_status",
    "failure_from",
]

#: ``ErrorInfo.domain`` of the limiter's errors.
ERROR_DOMAIN = "ratelimit.v1"
#: ``ErrorInfo.reason`` of a call the limiter shed because too much work was in flight.
OVERLOADED = "OVERLOADED"
_DETAILS_KEY = "grpc-status-details-bin"

# The limiter could not decide: the failure mode answers instead of an error.
_LIMITER_FAILED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DATA_LOSS,
    }
)


class RpcFailure(NamedTuple):
    """A call that ended without a reply: its status, the limiter's message, and the
    ``BadRequest`` field names and ``ErrorInfo`` reason it attached (empty when none)."""

    code: grpc.StatusCode
    details: str
    fields: tuple[str, ...] = ()
    reason: str = ""


class RateLimitClientError(Exception):
    """Base of every error the client raises on purpose."""


class InvalidKey(RateLimitClientError):
    """The limiter refused the key; ``reason`` says why (safe to show a client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Misconfigured(RateLimitClientError):
    """The server's rate limiting is misconfigured. ``detail`` is safe to show;
    ``log_detail`` is the limiter's full message, for the log only."""

    def __init__(self, detail: str, log_detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.log_detail = log_detail


class ResetFailed(RateLimitClientError):
    """``reset`` did not happen: the limiter (or its backend) did not answer in time."""


def failure_from(error: grpc.RpcError) -> RpcFailure:
    """An ``RpcFailure`` with the rich details decoded from ``error``'s trailers."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else "") or ""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    fields: list[str] = []
    reason = ""
    for key, value in trailers or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # undecodable details: treat as none (not ours)
            continue
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields += [violation.field for violation in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:
                    reason = info.reason
    return RpcFailure(code, details, tuple(fields), reason)


def _is_key_field(name: str) -> bool:
    return name == "key" or name.endswith(".key")


def error_for_status(failure: RpcFailure, policy: str) -> RateLimitClientError | None:
    """The error for a failed call, or ``None`` when the limiter could not decide and the
    failure mode must answer instead."""
    code = failure.code
    if code in _LIMITER_FAILED:
        return None
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and failure.reason == OVERLOADED:
        return None  # shed unexamined: says nothing about the request
    log_detail = f"{code.name}: {failure.details}"
    if code is grpc.StatusCode.INVALID_ARGUMENT and any(map(_is_key_field, failure.fields)):
        return InvalidKey(failure.details)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not failure.reason:
        # gRPC itself refused the message as too large: only the key can make it so.
        return InvalidKey("too large")
    if code is grpc.StatusCode.NOT_FOUND:
        return Misconfigured(f"rate-limit policy {policy!r} does not exist", log_detail)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return Misconfigured(f"rate-limit policy {policy!r} refused the request", log_detail)
    return Misconfigured(f"the rate limiter refused the call ({code.name})", log_detail)
