"""Baseline A: a bare grpc.aio server on the limiter's method paths that decides nothing.

``python -m bench.echo_server --listen 127.0.0.1:PORT`` serves
``/ratelimit.v1.RateLimiter/ShouldAllow`` (a constant allowed ``ShouldAllowResponse``) and
``/ratelimit.v1.RateLimiter/ShouldAllowBatch`` (that constant once per request item). Requests
are parsed and responses serialized exactly as the limiter does, so the difference between
the two is the limiter's own work: validation, policy choice, coalescing and the backend.
Runs until SIGTERM or SIGINT, then exits 0; exits 2 when it cannot listen.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import grpc
from google.protobuf.duration_pb2 import Duration

from limiter_service import proto

__all__ = ["ALLOWED", "main", "serve"]

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


async def _should_allow(
    request: proto.ShouldAllowRequest, context: grpc.aio.ServicerContext
) -> proto.ShouldAllowResponse:
    return ALLOWED


async def _should_allow_batch(
    request: proto.ShouldAllowBatchRequest, context: grpc.aio.ServicerContext
) -> proto.ShouldAllowBatchResponse:
    return proto.ShouldAllowBatchResponse(responses=[ALLOWED] * len(request.requests))


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        proto.SERVICE_NAME,
        {
            "ShouldAllow": grpc.unary_unary_rpc_method_handler(
                _should_allow,
                request_deserializer=proto.ShouldAllowRequest.FromString,
                response_serializer=proto.ShouldAllowResponse.SerializeToString,
            ),
            "ShouldAllowBatch": grpc.unary_unary_rpc_method_handler(
                _should_allow_batch,
                request_deserializer=proto.ShouldAllowBatchRequest.FromString,
                response_serializer=proto.ShouldAllowBatchResponse.SerializeToString,
            ),
        },
    )


async def serve(listen: str) -> int:
    """Serve on ``listen`` (host:port) until SIGTERM/SIGINT; return the exit status."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handler(),))
    if server.add_insecure_port(listen) == 0:
        print(f"echo_server: cannot listen on {listen}", file=sys.stderr)
        return 2
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server", description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port to serve on")
    args = parser.parse_args(argv)
    return asyncio.run(serve(args.listen))


if __name__ == "__main__":
    sys.exit(main())
