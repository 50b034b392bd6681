"""An in-process ``ratelimit.v1`` server answering as a test scripts it: a reply, or a status
with the ``google.rpc`` rich error details the real limiter attaches.

It speaks the generated contract (``proto.add_RateLimiterServicer_to_server``), so the
client under test decodes real trailers from a real gRPC server; only the answers are
made up. Used where the real limiter cannot be made to answer something (a window it has
no policy for, a status it never sends).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from ratelimit_client import proto

__all__ = ["Answer", "rich_status", "serve"]

#: How the stand-in answers one request: a reply, or the status the call ends with.
Answer = Callable[[proto.ShouldAllowRequest], "proto.ShouldAllowResponse | grpc.Status"]


def rich_status(code: grpc.StatusCode, message: str, *details: Message) -> grpc.Status:
    """A status with ``details`` (e.g. ``BadRequest``, ``ErrorInfo``) packed into the
    ``grpc-status-details-bin`` trailer, as the limiter sends them."""
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=packed)
    )
    return status


class _StandIn(proto.RateLimiterServicer):
    def __init__(self, answer: Answer) -> None:
        self._answer = answer

    async def ShouldAllow(
        self, request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowResponse:
        outcome = self._answer(request)
        if isinstance(outcome, proto.ShouldAllowResponse):
            return outcome
        await context.abort(outcome.code, outcome.details, outcome.trailing_metadata)
        raise AssertionError("unreachable: abort raises")

    async def ShouldAllowBatch(
        self, request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowBatchResponse:
        replies = []
        for item in request.requests:
            outcome = self._answer(item)
            if not isinstance(outcome, proto.ShouldAllowResponse):
                # As the limiter does: one refused item refuses the whole batch.
                await context.abort(outcome.code, outcome.details, outcome.trailing_metadata)
            replies.append(outcome)
        return proto.ShouldAllowBatchResponse(responses=replies)


@asynccontextmanager
async def serve(answer: Answer) -> AsyncIterator[str]:
    """Serve ``answer`` on a free loopback port; yields the ``host:port`` to dial."""
    server = grpc.aio.server()
    proto.add_RateLimiterServicer_to_server(_StandIn(answer), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
