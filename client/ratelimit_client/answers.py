"""From the limiter's reply (or the lack of one) to a ``Decision``: the failure mode,
error mapping, outage logging and decision metrics that the asyncio and sync clients
share."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from ratelimit_client import proto
from ratelimit_client.decision import Decision, Reason
from ratelimit_client.errors import (
    Misconfigured,
    RateLimitClientError,
    ResetFailed,
    RpcFailure,
    error_for_status,
)
from ratelimit_client.metrics import LIMITER_BACKEND, NO_METRICS, ClientMetrics
from ratelimit_client.outage import ErrorLog, OutageLog
from ratelimit_client.settings import FailureMode

__all__ = ["FAIL_CLOSED_RETRY_AFTER_S", "Answers"]

FAIL_CLOSED_RETRY_AFTER_S = 1
_FAIL_OPEN = int(Reason.FAIL_OPEN)
_FAIL_CLOSED = int(Reason.FAIL_CLOSED)
# Reasons of an allowed decision the limiter made (anything else allowed: WITHIN_LIMIT).
_ALLOWED = {int(r): r for r in (Reason.SHADOW_OVER_LIMIT, Reason.UNLIMITED, Reason.NOT_ALL_ALLOWED)}
_NOT_ALL_ALLOWED = int(Reason.NOT_ALL_ALLOWED)


def ceil_s(duration: Duration) -> int:
    """Whole seconds, rounded up; 0 for a zero, absent or negative duration."""
    return max(0, duration.seconds + (1 if duration.nanos > 0 else 0))


class Answers:
    """Turns replies and failures into decisions under one failure mode; ``outages``
    counts and logs the requests the failure mode answered; ``metrics`` hears of every
    decision returned."""

    def __init__(self, failure_mode: FailureMode, metrics: ClientMetrics = NO_METRICS) -> None:
        self._open = failure_mode is FailureMode.OPEN
        self.outages = OutageLog(failure_mode.value)
        self._errors = ErrorLog()
        self._metrics = metrics

    def reply(self, reply: proto.ShouldAllowResponse, policy: str) -> Decision:
        """The decision the limiter sent (``policy`` names it if the reply does not)."""
        decision = self._decision(reply, policy)
        self._metrics.answered(decision.reason, "" if decision.counted else LIMITER_BACKEND)
        return decision

    def _decision(self, reply: proto.ShouldAllowResponse, policy: str) -> Decision:
        reason = reply.reason
        if reason in (_FAIL_OPEN, _FAIL_CLOSED):
            self.outages.failed(f"the limiter answered {Reason(reason).name}: its backend is down")
            if reason == _FAIL_OPEN:
                return Decision(True, Reason.FAIL_OPEN, reply.policy or policy)
            retry_after_s = max(1, ceil_s(reply.retry_after))
            return Decision(
                False, Reason.FAIL_CLOSED, reply.policy or policy, 0, 0, 0, retry_after_s
            )
        if self.outages.in_outage:
            self.outages.recovered()
        window_s = ceil_s(reply.window)
        if reply.allowed:
            return Decision(
                True,
                _ALLOWED.get(reason, Reason.WITHIN_LIMIT),
                reply.policy,
                reply.limit,
                reply.remaining,
                ceil_s(reply.reset_after),
                0,
                window_s,
            )
        retry_after_s = max(1, ceil_s(reply.retry_after))
        return Decision(
            False,
            Reason.NOT_ALL_ALLOWED if reason == _NOT_ALL_ALLOWED else Reason.OVER_LIMIT,
            reply.policy,
            reply.limit,
            reply.remaining,
            retry_after_s,
            retry_after_s,
            window_s,
        )

    def reset_failure(self, failure: RpcFailure, policy: str) -> RateLimitClientError:
        """The error a failed ``Reset`` raises: as for a decision, or ``ResetFailed`` when
        the limiter could not act (there is no failure mode for a reset)."""
        error = error_for_status(failure, policy)
        if error is None:
            return ResetFailed(f"{failure.code.name}: {failure.details}")
        return error

    def failure(self, failure: RpcFailure, policy: str) -> Decision:
        """The failure mode's decision when the limiter could not decide; raises
        ``InvalidKey`` or ``Misconfigured`` when it refused the request."""
        error = error_for_status(failure, policy)
        if error is None:
            self.outages.failed(f"{failure.code.name}: {failure.details}")
            cause = failure.code.name.lower()
            if self._open:
                self._metrics.answered(Reason.FAIL_OPEN, cause)
                return Decision(True, Reason.FAIL_OPEN, policy)
            self._metrics.answered(Reason.FAIL_CLOSED, cause)
            return Decision(False, Reason.FAIL_CLOSED, policy, 0, 0, 0, FAIL_CLOSED_RETRY_AFTER_S)
        if self.outages.in_outage:
            self.outages.recovered()
        if isinstance(error, Misconfigured):
            self._errors.error(f"rate limiting misconfigured ({error.detail}): {error.log_detail}")
        raise error
