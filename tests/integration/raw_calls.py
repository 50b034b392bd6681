"""Bytes in, bytes out: calling ``ratelimit.v1.RateLimiter`` with payloads the generated stub
could never produce (undecodable messages, fuzzing). The generated stub builds the calls, so
the method paths are its own; only its (de)serializers are left out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ratelimit_client import proto


class _WithoutSerializers:
    """A channel stand-in for the generated stub: each callable it asks for is the real
    channel's, built with the stub's method path and no (de)serializers."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def __getattr__(self, kind: str) -> Callable[..., Any]:
        factory = getattr(self._channel, kind)
        return lambda method, **_options: factory(method)


def raw_method(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    """A callable sending ``bytes`` to ``method`` and returning the reply's ``bytes``."""
    call: grpc.UnaryUnaryMultiCallable = getattr(
        proto.RateLimiterStub(_WithoutSerializers(channel)), method
    )
    return call
