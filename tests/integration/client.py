"""A small grpc.aio client for the tests, speaking ``ratelimit.v1`` through the generated stub."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from ratelimit_client import proto


class LimiterClient:
    """One channel to one limiter."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = proto.RateLimiterStub(self.channel)

    async def should_allow(
        self,
        key: str,
        policy: str = "",
        cost: int = 0,
        dry_run: bool = False,
        timeout: float = 5.0,
    ) -> proto.ShouldAllowResponse:
        request = proto.ShouldAllowRequest(key=key, policy=policy, cost=cost, dry_run=dry_run)
        response: proto.ShouldAllowResponse = await self.stub.ShouldAllow(request, timeout=timeout)
        return response

    async def batch(
        self,
        requests: Sequence[proto.ShouldAllowRequest],
        timeout: float = 5.0,
        all_or_nothing: bool = False,
    ) -> list[proto.ShouldAllowResponse]:
        message = proto.ShouldAllowBatchRequest(requests=requests, all_or_nothing=all_or_nothing)
        reply: proto.ShouldAllowBatchResponse = await self.stub.ShouldAllowBatch(
            message, timeout=timeout
        )
        return list(reply.responses)

    async def close(self) -> None:
        await self.channel.close()
