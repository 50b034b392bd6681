"""Baseline A: a bare grpc.aio server for ``ratelimit.v1.RateLimiter`` that decides nothing.

``LIMITER_LISTEN=127.0.0.1:PORT python -m bench.echo_server`` answers every ``ShouldAllow``
with one constant allowed response, and every ``ShouldAllowBatch`` with that response once
per item. It registers through the generated ``add_RateLimiterServicer_to_server``, as the
limiter does, so requests are parsed and answers serialized the same way: the difference
between the two is the limiter's own work (validation, policy choice, coalescing, backend).
Serves until killed (SIGTERM's default action); exits 2 when it cannot listen.
"""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
from google.protobuf.duration_pb2 import Duration

from ratelimit_client import proto

__all__ = ["ALLOWED", "EchoServicer", "serve"]

ALLOWED = proto.ShouldAllowResponse(
    allowed=True,
    limit=1_000_000,
    remaining=999_999,
    reset_after=Duration(seconds=60),
    retry_after=Duration(),
    policy="default",
    reason=proto.Reason.REASON_WITHIN_LIMIT,
)
"""What every decision of the echo server says."""


class EchoServicer(proto.RateLimiterServicer):
    """Answers ``ALLOWED`` to everything."""

    async def ShouldAllow(
        self, request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowResponse:
        return ALLOWED

    async def ShouldAllowBatch(
        self, request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
    ) -> proto.ShouldAllowBatchResponse:
        return proto.ShouldAllowBatchResponse(responses=[ALLOWED] * len(request.requests))


async def serve(listen: str) -> int:
    """Serve on ``listen`` (host:port) until the process is killed; 2 if it cannot bind."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    proto.add_RateLimiterServicer_to_server(EchoServicer(), server)
    if server.add_insecure_port(listen) == 0:
        print(f"echo_server: cannot listen on {listen}", file=sys.stderr)
        return 2
    await server.start()
    await server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(os.environ["LIMITER_LISTEN"])))
