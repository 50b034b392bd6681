"""The wire types of ``ratelimit.v1`` and the names a client needs to call the service.

Generated modules live in ``_gen`` (``make proto`` rewrites them); import from here.
The service registers its handlers by hand rather than through generated stubs, so the method
paths below are the single source for both server and clients.
"""

from limiter_service.proto._gen.ratelimit.v1.ratelimit_pb2 import (
    Reason,
    ShouldAllowBatchRequest,
    ShouldAllowBatchResponse,
    ShouldAllowRequest,
    ShouldAllowResponse,
)

SERVICE_NAME = "ratelimit.v1.RateLimiter"
SHOULD_ALLOW_METHOD = f"/{SERVICE_NAME}/ShouldAllow"
SHOULD_ALLOW_BATCH_METHOD = f"/{SERVICE_NAME}/ShouldAllowBatch"

__all__ = [
    "SERVICE_NAME",
    "SHOULD_ALLOW_BATCH_METHOD",
    "SHOULD_ALLOW_METHOD",
    "Reason",
    "ShouldAllowBatchRequest",
    "ShouldAllowBatchResponse",
    "ShouldAllowRequest",
    "ShouldAllowResponse",
]
