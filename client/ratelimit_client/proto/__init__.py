"""The wire contract of ``ratelimit.v1``: messages, the client stub and the servicer base.

Everything here comes from the code ``make proto`` generates into ``_gen`` from
``protos/``; the server, this client library, the bench and the tests all import it from
here, and nobody spells a method path or a serializer by hand.
"""

from ratelimit_client.proto._gen.ratelimit.v1 import ratelimit_pb2
from ratelimit_client.proto._gen.ratelimit.v1.ratelimit_pb2 import (
    Reason,
    ResetRequest,
    ResetResponse,
    ShouldAllowBatchRequest,
    ShouldAllowBatchResponse,
    ShouldAllowRequest,
    ShouldAllowResponse,
)
from ratelimit_client.proto._gen.ratelimit.v1.ratelimit_pb2_grpc import (
    RateLimiterServicer,
    RateLimiterStub,
    add_RateLimiterServicer_to_server,
)

#: ``ratelimit.v1.RateLimiter``, as the descriptor spells it.
SERVICE_NAME: str = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimiter"].full_name
#: The ``.proto`` file descriptor (reflection serves it).
FILE_DESCRIPTOR = ratelimit_pb2.DESCRIPTOR

__all__ = [
    "FILE_DESCRIPTOR",
    "SERVICE_NAME",
    "RateLimiterServicer",
    "RateLimiterStub",
    "Reason",
    "ResetRequest",
    "ResetResponse",
    "ShouldAllowBatchRequest",
    "ShouldAllowBatchResponse",
    "ShouldAllowRequest",
    "ShouldAllowResponse",
    "add_RateLimiterServicer_to_server",
]
