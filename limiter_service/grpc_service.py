"""The gRPC edge: ``ratelimit.v1.RateLimiter`` on top of ``Limiter``.

Converts wire messages to domain values and back, and maps errors to status codes in one
place (``status_for``): a client sees a status, a message naming the problem and the
``google.rpc`` rich error details, never a traceback:

=====================  ==================  ================================================
error                  status              details
=====================  ==================  ================================================
``InvalidRequest``     INVALID_ARGUMENT    ``BadRequest``: the field (``key``, ``cost``,
                                           ``requests``, ``requests[3].key``)
``UnknownPolicy``      NOT_FOUND           ``ErrorInfo`` ``UNKNOWN_POLICY``, ``policy``
``LimiterError``       UNAVAILABLE         ``ErrorInfo`` ``BACKEND_UNAVAILABLE``
anything else          INTERNAL            ``ErrorInfo`` ``INTERNAL`` (logged with its
                                           traceback, once per occurrence)
=====================  ==================  ================================================

Oversized messages (> 64 KiB) are refused by gRPC itself with RESOURCE_EXHAUSTED (no details).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from limiter_service.decision import US_PER_SECOND, Decision
from limiter_service.errors import InvalidRequest, LimiterError, UnknownPolicy
from limiter_service.limiter import Limiter
from ratelimit_client import proto
from ratelimit_client.errors import ERROR_DOMAIN

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024

S = TypeVar("S")
In = TypeVar("In")
Out = TypeVar("Out")
Handler = Callable[[S, In, grpc.aio.ServicerContext], Awaitable[Out]]


def _packed(message: error_details_pb2.BadRequest | error_details_pb2.ErrorInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)


def status_for(error: Exception, batch: bool) -> grpc.Status:
    """The one place where errors become gRPC statuses (with rich details). ``batch``: the
    error came from ``ShouldAllowBatch``, whose fields are ``requests[i].<field>``."""
    if isinstance(error, InvalidRequest):
        field = error.field
        if batch and error.index is not None:
            field = f"requests[{error.index}].{field}"
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=str(error))
        code, detail = (
            code_pb2.INVALID_ARGUMENT,
            error_details_pb2.BadRequest(field_violations=[violation]),
        )
    elif isinstance(error, UnknownPolicy):
        code, detail = code_pb2.NOT_FOUND, _info("UNKNOWN_POLICY", policy=error.policy)
    elif isinstance(error, LimiterError):
        code, detail = code_pb2.UNAVAILABLE, _info("BACKEND_UNAVAILABLE")
    else:
        code, detail = code_pb2.INTERNAL, _info("INTERNAL")
    message = str(error) if code != code_pb2.INTERNAL else "internal error; see the limiter's log"
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_packed(detail)])
    )


def _mapped(batch: bool) -> Callable[[Handler[S, In, Out]], Handler[S, In, Out]]:
    """A handler that answers its errors with ``status_for``'s status."""

    def decorate(handler: Handler[S, In, Out]) -> Handler[S, In, Out]:
        @functools.wraps(handler)
        async def wrapper(self: S, request: In, context: grpc.aio.ServicerContext) -> Out:
            try:
                return await handler(self, request, context)
            except Exception as exc:
                status = status_for(exc, batch)
                if status.code is grpc.StatusCode.INTERNAL:
                    log.exception("unexpected error in %s", handler.__name__)
                await context.abort(status.code, status.details, status.trailing_metadata)
                raise  # unreachable: abort raises

        return wrapper

    return decorate


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


class RateLimiterService(proto.RateLimiterServicer):
    """Handlers for ``ratelimit.v1.RateLimiter``; ``add_to`` registers them (as the
    generated code does: registered methods, matched by path in gRPC core)."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    @_mapped(batch=False)
    async def ShouldAllow(
        self, request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowResponse:
        decisions = await self._limiter.decide((request,), context.time_remaining())
        response = proto.ShouldAllowResponse()
        _fill(response, decisions[0])
        return response

    @_mapped(batch=True)
    async def ShouldAllowBatch(
        self, request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowBatchResponse:
        decisions = await self._limiter.decide(request.requests, context.time_remaining())
        response = proto.ShouldAllowBatchResponse()
        add = response.responses.add
        for decision in decisions:
            _fill(add(), decision)
        return response

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register both methods on ``server``."""
        proto.add_RateLimiterServicer_to_server(self, server)
