"""Calls ``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` as Envoy does,
through the generated stub, for the tests (and the Envoy-edge tests' checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import grpc

from limiter_service.envoy import proto

Code = proto.RateLimitResponse.Code
Unit = proto.RateLimitResponse.RateLimit.Unit


class Descriptor(NamedTuple):
    """One descriptor: ``entries`` as (key, value) pairs; optionally its own cost
    (``hits_addend``) and a limit override (``requests_per_unit`` per ``unit``, a
    ``RateLimitUnit`` number: 1 SECOND .. 6 YEAR)."""

    entries: Sequence[tuple[str, str]]
    hits_addend: int | None = None
    override: tuple[int, int] | None = None


def descriptor(*entries: tuple[str, str], hits_addend: int | None = None) -> Descriptor:
    return Descriptor(entries, hits_addend)


def request(
    domain: str, descriptors: Sequence[Descriptor], hits_addend: int = 0
) -> proto.RateLimitRequest:
    message = proto.RateLimitRequest(domain=domain, hits_addend=hits_addend)
    for item in descriptors:
        added = message.descriptors.add()
        for key, value in item.entries:
            added.entries.add(key=key, value=value)
        if item.hits_addend is not None:
            added.hits_addend.value = item.hits_addend
        if item.override is not None:
            added.limit.requests_per_unit = item.override[0]
            added.limit.unit = item.override[1]  # type: ignore[assignment]
    return message


class EnvoyClient:
    """One channel to one limiter, speaking Envoy's Rate Limit Service API."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = proto.RateLimitServiceStub(self.channel)

    async def should_rate_limit(
        self,
        domain: str,
        descriptors: Sequence[Descriptor],
        hits_addend: int = 0,
        timeout: float = 5.0,
    ) -> proto.RateLimitResponse:
        response: proto.RateLimitResponse = await self.stub.ShouldRateLimit(
            request(domain, descriptors, hits_addend), timeout=timeout
        )
        return response

    async def close(self) -> None:
        await self.channel.close()
