"""The wire contract of ``envoy.service.ratelimit.v3``: messages, the stub and the servicer
base, from the code ``make proto`` generates into ``_gen`` from ``protos/envoy/`` (our own
minimal, wire-compatible copy of Envoy's API: same packages, names and field numbers)."""

from limiter_service.envoy._gen.envoy.config.core.v3.base_pb2 import HeaderValue
from limiter_service.envoy._gen.envoy.extensions.common.ratelimit.v3.ratelimit_pb2 import (
    RateLimitDescriptor,
)
from limiter_service.envoy._gen.envoy.service.ratelimit.v3 import rls_pb2
from limiter_service.envoy._gen.envoy.service.ratelimit.v3.rls_pb2 import (
    RateLimitRequest,
    RateLimitResponse,
)
from limiter_service.envoy._gen.envoy.service.ratelimit.v3.rls_pb2_grpc import (
    RateLimitServiceServicer,
    RateLimitServiceStub,
    add_RateLimitServiceServicer_to_server,
)
from limiter_service.envoy._gen.envoy.type.v3.ratelimit_unit_pb2 import RateLimitUnit

#: ``envoy.service.ratelimit.v3.RateLimitService``, as the descriptor spells it.
SERVICE_NAME: str = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name
#: The ``.proto`` file descriptor (reflection serves it).
FILE_DESCRIPTOR = rls_pb2.DESCRIPTOR

__all__ = [
    "FILE_DESCRIPTOR",
    "SERVICE_NAME",
    "HeaderValue",
    "RateLimitDescriptor",
    "RateLimitRequest",
    "RateLimitResponse",
    "RateLimitServiceServicer",
    "RateLimitServiceStub",
    "RateLimitUnit",
    "add_RateLimitServiceServicer_to_server",
]
