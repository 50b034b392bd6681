"""The gRPC edge: ``ratelimit.v1.RateLimiter`` on top of ``Limiter``.

Converts wire messages to domain values and back, and maps errors to status codes in one
place (``status_for``): a client sees a status, a message naming the problem and the
``google.rpc`` rich error details, never a traceback:

=====================  ==================  ================================================
error                  status              details
=====================  ==================  ================================================
``InvalidRequest``     INVALID_ARGUMENT    ``BadRequest``: the field (``key``, ``cost``,
                                           ``requests``, ``requests[3].key``, ``limit``,
                                           ``window``, ``policy``)
``UnknownPolicy``      NOT_FOUND           ``ErrorInfo`` ``UNKNOWN_POLICY``, ``policy``
``OverrideNot...``     PERMISSION_DENIED   ``ErrorInfo`` ``REQUEST_OVERRIDE_NOT_ALLOWED``,
                                           ``policy``
``Overloaded``         RESOURCE_EXHAUSTED  ``ErrorInfo`` ``OVERLOADED``, ``limit`` (the
                                           admission limit reached: ``rpcs``,
                                           ``peer_rpcs``, ``decisions``,
                                           ``peer_decisions``)
``LimiterError``       UNAVAILABLE         ``ErrorInfo`` ``BACKEND_UNAVAILABLE``
anything else          INTERNAL            ``ErrorInfo`` ``INTERNAL`` (logged with its
                                           traceback, once per occurrence)
=====================  ==================  ================================================

Oversized messages (> 64 KiB) are refused by gRPC itself with RESOURCE_EXHAUSTED (no details).
A shed call gets a status rather than a failure-mode answer: a status costs nothing to build
(a failure-mode answer to a batch is 1000 messages), and it tells the caller the limiter is
overloaded instead of passing for a Redis outage. The client library answers it with its own
failure mode, and does not retry it.
Calls are admitted per peer *address* (``peer_address``): every connection from one IP
shares one limit, whatever its port.
A message that does not decode (e.g. a key that is not UTF-8) is INVALID_ARGUMENT with the
field ``request``, logged at most once per ``_UNDECODABLE_LOG_EVERY_S``, never with a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from limiter_service.decision import US_PER_SECOND, Decision
from limiter_service.errors import (
    InvalidRequest,
    LimiterError,
    Overloaded,
    OverrideNotAllowed,
    UnknownPolicy,
)
from limiter_service.limiter import Limiter
from limiter_service.metrics import Metrics
from ratelimit_client import proto
from ratelimit_client.errors import ERROR_DOMAIN, OVERLOADED

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024
_UNDECODABLE_LOG_EVERY_S = 10.0


class _Measured(Protocol):
    """A servicer whose handlers' time and status go to ``metrics``."""

    @property
    def metrics(self) -> Metrics: ...


S = TypeVar("S", bound=_Measured)
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
    elif isinstance(error, OverrideNotAllowed):
        code = code_pb2.PERMISSION_DENIED
        detail = _info("REQUEST_OVERRIDE_NOT_ALLOWED", policy=error.policy)
    elif isinstance(error, Overloaded):
        code, detail = code_pb2.RESOURCE_EXHAUSTED, _info(OVERLOADED, limit=error.limit)
    elif isinstance(error, LimiterError):
        code, detail = code_pb2.UNAVAILABLE, _info("BACKEND_UNAVAILABLE")
    else:
        code, detail = code_pb2.INTERNAL, _info("INTERNAL")
    message = str(error) if code != code_pb2.INTERNAL else "internal error; see the limiter's log"
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_packed(detail)])
    )


def peer_address(peer: str) -> str:
    """The address part of a gRPC peer (``ipv4:10.0.0.7:5123`` -> ``10.0.0.7``,
    ``ipv6:[::1]:5123`` -> ``::1``, an IPv4-mapped IPv6 address as IPv4); any other kind of
    peer (``unix:...``) as it is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]")
        return host[7:] if host.lower().startswith("::ffff:") and "." in host else host
    return peer


class Undecodable(NamedTuple):
    """What the server received instead of a message it could decode, and why."""

    reason: str


def tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize``, answering ``Undecodable`` instead of raising (gRPC would answer
    UNKNOWN and log a traceback for every such request)."""

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Undecodable(str(exc))

    return parse


class _Throttled:
    """Logs a warning at most once per ``every_s`` seconds, counting what it skipped."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last = -every_s
        self._skipped = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self._every_s:
            self._skipped += 1
            return
        log.warning("%s (%d more like it not logged)", message, self._skipped)
        self._last, self._skipped = now, 0


_undecodable_log = _Throttled(_UNDECODABLE_LOG_EVERY_S)


def _mapped(batch: bool) -> Callable[[Handler[S, In, Out]], Handler[S, In, Out]]:
    """A handler that answers its errors with ``status_for``'s status, and reports its
    time and status code to the servicer's ``metrics`` (a call the client cancelled as
    ``CANCELLED``)."""

    def decorate(handler: Handler[S, In, Out]) -> Handler[S, In, Out]:
        method = handler.__name__

        @functools.wraps(handler)
        async def wrapper(self: S, request: In, context: grpc.aio.ServicerContext) -> Out:
            started = time.perf_counter()
            code = "OK"
            try:
                if isinstance(request, Undecodable):
                    _undecodable_log.warning(f"refused an undecodable request: {request.reason}")
                    raise InvalidRequest(
                        f"the request does not decode: {request.reason}", "request"
                    )
                return await handler(self, request, context)
            except Exception as exc:
                status = status_for(exc, batch)
                code = status.code.name
                if status.code is grpc.StatusCode.INTERNAL:
                    log.exception("unexpected error in %s", method)
                await context.abort(status.code, status.details, status.trailing_metadata)
                raise  # unreachable: abort raises
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                self.metrics.rpc(method, code, time.perf_counter() - started)

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
    generated code does: registered methods, matched by path in gRPC core). Each
    handler's time and status go to ``metrics`` (default: the limiter's)."""

    def __init__(self, limiter: Limiter, metrics: Metrics | None = None) -> None:
        self._limiter = limiter
        self.metrics = metrics if metrics is not None else limiter.metrics

    @_mapped(batch=False)
    async def ShouldAllow(
        self, request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowResponse:
        decisions = await self._limiter.decide(
            (request,), context.time_remaining(), peer_address(context.peer())
        )
        response = proto.ShouldAllowResponse()
        _fill(response, decisions[0])
        return response

    @_mapped(batch=True)
    async def ShouldAllowBatch(
        self, request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowBatchResponse:
        decisions = await self._limiter.decide(
            request.requests,
            context.time_remaining(),
            peer_address(context.peer()),
            all_or_nothing=request.all_or_nothing,
        )
        response = proto.ShouldAllowBatchResponse()
        add = response.responses.add
        for decision in decisions:
            _fill(add(), decision)
        return response

    @_mapped(batch=False)
    async def Reset(
        self, request: proto.ResetRequest, context: grpc.aio.ServicerContext
    ) -> proto.ResetResponse:
        name = await self._limiter.reset(request, context.time_remaining())
        return proto.ResetResponse(policy=name)

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register the methods on ``server`` (``register``)."""
        register(server, proto.add_RateLimiterServicer_to_server, self)


def register(
    server: grpc.aio.Server, add_servicer: Callable[[Any, Any], None], servicer: object
) -> None:
    """Register ``servicer``'s methods on ``server`` from the method table the generated
    ``add_<Service>Servicer_to_server`` (``add_servicer``) builds, with ``tolerant`` request
    deserializers."""
    table = _MethodTable()
    add_servicer(servicer, table)
    handlers = {
        method: handler._replace(request_deserializer=tolerant(handler.request_deserializer))
        for method, handler in table.handlers.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(table.service, handlers),)
    )
    server.add_registered_method_handlers(table.service, handlers)


class _MethodTable:
    """Stands in for a server to read the generated code's method table."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: Mapping[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        """Ignored: the registered handlers carry the same table."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        self.service, self.handlers = service, handlers
