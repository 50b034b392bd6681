"""gRPC server reflection, under both service names clients ask for.

grpcio-reflection implements ``grpc.reflection.v1alpha.ServerReflection``. Newer clients
(grpcurl, ``buf curl``) ask for ``grpc.reflection.v1.ServerReflection`` first; the two
protocols are the same messages under another package name, so the same servicer answers
both and ``grpcurl list`` / ``describe`` / calls work with no proto files.

``LIMITER_REFLECTION=false`` leaves it out (the server then answers ``UNIMPLEMENTED``).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for ``service_names`` (plus the reflection services themselves)."""
    # The v1 name is served but not listed: no descriptor of it ships with grpcio.
    names = (*service_names, reflection.SERVICE_NAME)
    servicer = ReflectionServicer(names)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for name in (reflection.SERVICE_NAME, V1_SERVICE_NAME):
        handler = grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method})
        server.add_generic_rpc_handlers((handler,))
