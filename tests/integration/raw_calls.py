"""Bytes in, bytes out: calling ``ratelimit.v1.RateLimiter`` with payloads the generated stub
could never produce (undecodable messages, fuzzing). The path comes from the descriptor."""

from __future__ import annotations

import grpc

from ratelimit_client import proto


def raw_method(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    """A callable sending ``bytes`` to ``method`` and returning the reply's ``bytes``."""
    service = proto.FILE_DESCRIPTOR.services_by_name["RateLimiter"]
    return channel.unary_unary(f"/{service.full_name}/{service.methods_by_name[method].name}")
