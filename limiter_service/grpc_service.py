"""The gRPC edge: ``ratelimit.v1.RateLimiter`` on top of ``Limiter``.

Converts wire messages to domain values and back, and maps errors to status codes in one
place (``_status_for``): a client sees a status and a message naming the problem, never a
traceback. Oversized messages (> 64 KiB) are refused by gRPC itself with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import grpc

from limiter_service import proto
from limiter_service.decision import US_PER_SECOND, Decision
from limiter_service.errors import InvalidRequest, LimiterError, UnknownPolicy
from limiter_service.limiter import Limiter

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024

In = TypeVar("In")
Out = TypeVar("Out")
Handler = Callable[[In, grpc.aio.ServicerContext], Awaitable[Out]]


def _status_for(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The one place where errors become gRPC statuses."""
    if isinstance(error, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, UnknownPolicy):
        return grpc.StatusCode.NOT_FOUND, str(error)
    if isinstance(error, LimiterError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    return grpc.StatusCode.INTERNAL, "internal error; see the limiter's log"


def _mapped(handler: Handler[In, Out]) -> Handler[In, Out]:
    async def wrapper(request: In, context: grpc.aio.ServicerContext) -> Out:
        try:
            return await handler(request, context)
        except Exception as exc:
            code, message = _status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("unexpected error in %s", handler.__name__)
            await context.abort(code, message)
            raise  # unreachable: abort raises

    wrapper.__name__ = handler.__name__
    return wrapper


def _fill(message: proto.ShouldAllowResponse, decision: Decision) -> None:
    """Write ``decision`` into ``message`` in place (cheaper than building sub-messages)."""
    message.allowed = decision.allowed
    message.limit = decision.limit
    message.remaining = max(decision.remaining, 0)
    message.policy = decision.policy
    message.reason = cast("proto.Reason", int(decision.reason))
    for field, us in (
        (message.reset_after, decision.reset_after_us),
        (message.retry_after, decision.retry_after_us),
        (message.window, decision.window_us),
    ):
        seconds, rest = divmod(max(us, 0), US_PER_SECOND)
        field.seconds = seconds
        field.nanos = rest * 1000


class RateLimiterService:
    """Handlers for ``ratelimit.v1.RateLimiter``."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def ShouldAllow(
        self, request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowResponse:
        decisions = await self._limiter.decide((request,), context.time_remaining())
        response = proto.ShouldAllowResponse()
        _fill(response, decisions[0])
        return response

    async def ShouldAllowBatch(
        self, request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowBatchResponse:
        decisions = await self._limiter.decide(request.requests, context.time_remaining())
        response = proto.ShouldAllowBatchResponse()
        add = response.responses.add
        for decision in decisions:
            _fill(add(), decision)
        return response

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Both methods of ``ratelimit.v1.RateLimiter``, by method name."""
        return {
            "ShouldAllow": grpc.unary_unary_rpc_method_handler(
                _mapped(self.ShouldAllow),
                request_deserializer=proto.ShouldAllowRequest.FromString,
                response_serializer=proto.ShouldAllowResponse.SerializeToString,
            ),
            "ShouldAllowBatch": grpc.unary_unary_rpc_method_handler(
                _mapped(self.ShouldAllowBatch),
                request_deserializer=proto.ShouldAllowBatchRequest.FromString,
                response_serializer=proto.ShouldAllowBatchResponse.SerializeToString,
            ),
        }
