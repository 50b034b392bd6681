"""Reflection: discover and call ShouldAllow knowing nothing but the address, as grpcurl
does (``grpcurl -plaintext ADDR list`` then ``-d '{"key": ...}' ... /ShouldAllow``).

This test deliberately imports none of our protobuf code: every type comes from the
server's reflection service, and the request is built from JSON.
"""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from devstack import ProcessGroup, free_port
from devstack.limiter import start_limiter

pytestmark = pytest.mark.integration


def test_list_describe_and_call_through_reflection(processes: ProcessGroup) -> None:
    node = start_limiter(processes, "limiter", free_port(), {"RATE_LIMIT": "2"})
    with grpc.insecure_channel(node.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"ratelimit.v1.RateLimiter", "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("ratelimit.v1.RateLimiter")
        method = service.methods_by_name["ShouldAllow"]
        assert {m.name for m in service.methods} == {"ShouldAllow", "ShouldAllowBatch", "Reset"}
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_cls.FromString,
        )
        request = json_format.Parse(json.dumps({"key": "ip:1.2.3.4"}), request_cls())
        replies = [
            json_format.MessageToDict(call(request, timeout=5), preserving_proto_field_name=True)
            for _ in range(3)
        ]
    assert replies[0]["allowed"] is True and replies[0]["remaining"] == "1"
    assert replies[0]["reason"] == "REASON_WITHIN_LIMIT" and replies[0]["policy"] == "default"
    assert replies[0]["window"] == "60s"
    assert replies[2].get("allowed", False) is False
    assert replies[2]["reason"] == "REASON_OVER_LIMIT"
    assert replies[2]["retry_after"].endswith("s")


def test_v1_reflection_protocol_is_served_too(processes: ProcessGroup) -> None:
    """grpcurl and buf ask ``grpc.reflection.v1`` first; it must answer, not UNIMPLEMENTED."""
    from grpc_reflection.v1alpha import reflection_pb2

    node = start_limiter(processes, "limiter", free_port(), {})
    with grpc.insecure_channel(node.address) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(call(iter([request]), timeout=5))
    names = {service.name for service in reply.list_services_response.service}
    assert "ratelimit.v1.RateLimiter" in names
