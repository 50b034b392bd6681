"""Arbitrary bytes and arbitrary field values to every RPC: each answer is OK or a
documented status, never UNKNOWN or a traceback, and the server stays up and healthy."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack import ProcessGroup, free_port
from devstack.limiter import LimiterNode, start_limiter
from ratelimit_client import proto
from tests.integration.raw_calls import raw_method

pytestmark = pytest.mark.integration

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Python strings protobuf can encode (no lone surrogates), including the 4-byte plane.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
REQUESTS = st.builds(
    proto.ShouldAllowRequest,
    key=TEXT,
    policy=st.one_of(st.sampled_from(["", "default", "tight"]), TEXT),
    cost=st.integers(0, 2**32 - 1),
    dry_run=st.booleans(),
)


@pytest.fixture(scope="module")
def limiter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimiterNode]:
    path = tmp_path_factory.mktemp("fuzz") / "policies.yaml"
    path.write_text(
        "policies:\n  default: {limit: 5, window: 60s}\n  tight: {limit: 2, window: 1s}\n"
    )
    with ProcessGroup(tmp_path_factory.mktemp("fuzz-logs")) as group:
        yield start_limiter(
            group,
            "limiter",
            free_port(),
            {"LIMITER_BACKEND": "memory", "LIMITER_POLICIES": str(path)},
        )


@pytest.fixture(scope="module")
def channel(limiter: LimiterNode) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(limiter.address) as channel:
        yield channel


def outcome(call: grpc.UnaryUnaryMultiCallable, request: object) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=5)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def assert_documented(code: grpc.StatusCode, details: str) -> None:
    assert code in DOCUMENTED, f"{code.name}: {details}"
    assert "Traceback" not in details and len(details) < 2048


@FUZZ
@given(
    payload=st.binary(max_size=4096), method=st.sampled_from(["ShouldAllow", "ShouldAllowBatch"])
)
def test_arbitrary_bytes(channel: grpc.Channel, payload: bytes, method: str) -> None:
    assert_documented(*outcome(raw_method(channel, method), payload))


@FUZZ
@given(request=REQUESTS)
def test_arbitrary_single_requests(
    channel: grpc.Channel, request: proto.ShouldAllowRequest
) -> None:
    assert_documented(*outcome(proto.RateLimiterStub(channel).ShouldAllow, request))


@FUZZ
@given(requests=st.lists(REQUESTS, max_size=8))
def test_arbitrary_batches(channel: grpc.Channel, requests: list[proto.ShouldAllowRequest]) -> None:
    message = proto.ShouldAllowBatchRequest(requests=requests)
    assert_documented(*outcome(proto.RateLimiterStub(channel).ShouldAllowBatch, message))


def test_still_serving_after_the_fuzz(limiter: LimiterNode) -> None:
    """Runs after the fuzz tests (file order): the same process, healthy, no traceback logged."""
    assert limiter.process.is_running()
    assert limiter.health() == health_pb2.HealthCheckResponse.SERVING
    assert "Traceback" not in limiter.process.log_tail(10_000)
