"""Shadow, unlimited, overrides (by file and by request) and Reset, through a real limiter
process on the memory backend and on a real Redis."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from devstack import StandaloneRedis, free_port
from ratelimit_client import LimiterClient as LibraryClient
from ratelimit_client import LimiterSettings, Misconfigured, ResetFailed, proto
from tests.integration.client import LimiterClient
from tests.integration.conftest import LimiterOn
from tests.integration.test_bad_input import data_commands, rich_details

pytestmark = pytest.mark.integration
R = proto.Reason
POLICIES = """
policies:
  shadowed: {limit: 3, window: 1h, shadow: true}
  free: {unlimited: true}
  tiered:
    limit: 2
    window: 1h
    overrides:
      - {match: "premium:", limit: 5}
      - {match: "burst:*", limit: 4, window: 2h}
  open-quota: {limit: 2, window: 1h, allow_request_override: true}
  bucket: {limit: 3, window: 1h, algorithm: token_bucket}
  default: {limit: 10, window: 1h}
"""


@pytest.fixture(params=["memory", "redis"])
async def client(request: pytest.FixtureRequest, limiter_on: LimiterOn) -> LimiterClient:
    return limiter_on(request.param, POLICIES)


def key() -> str:
    return f"k:{uuid.uuid4()}"


async def test_shadow_counts_but_never_denies(client: LimiterClient) -> None:
    k = key()
    replies = [await client.should_allow(k, "shadowed") for _ in range(5)]
    assert [r.allowed for r in replies] == [True] * 5
    assert [r.reason for r in replies] == [R.REASON_WITHIN_LIMIT] * 3 + [
        R.REASON_SHADOW_OVER_LIMIT
    ] * 2
    assert [r.remaining for r in replies] == [2, 1, 0, 0, 0]
    assert replies[-1].retry_after.ToMicroseconds() > 0  # what a real denial would say


async def test_unlimited_is_allowed_without_touching_redis(
    client: LimiterClient, redis_server: StandaloneRedis
) -> None:
    before = data_commands(redis_server)
    replies = await client.batch([proto.ShouldAllowRequest(key=key(), policy="free")] * 50)
    assert {(r.allowed, r.reason, r.policy) for r in replies} == {
        (True, R.REASON_UNLIMITED, "free")
    }
    assert data_commands(redis_server) == before


async def test_file_overrides_by_key(client: LimiterClient) -> None:
    async def admitted(k: str) -> int:
        replies = [await client.should_allow(k, "tiered") for _ in range(8)]
        return sum(r.allowed for r in replies)

    assert await admitted(f"basic:{uuid.uuid4()}") == 2
    assert await admitted(f"premium:{uuid.uuid4()}") == 5
    assert await admitted(f"burst:{uuid.uuid4()}") == 4
    reply = await client.should_allow(f"burst:{uuid.uuid4()}", "tiered")
    assert (reply.limit, reply.window.seconds) == (4, 7200)


async def test_request_overrides_only_where_allowed(client: LimiterClient) -> None:
    k = key()
    hour, day = Duration(seconds=3600), Duration(seconds=86400)
    requests = [proto.ShouldAllowRequest(key=k, policy="open-quota", limit=4, window=hour)] * 6
    replies = await client.batch(requests)
    assert [r.allowed for r in replies] == [True] * 4 + [False] * 2
    assert replies[0].limit == 4
    # Another window: a counter of its own. The same window shares the counter (units
    # spent), each request judged by its own limit: the policy's 2 are spent already.
    other = await client.batch(
        [proto.ShouldAllowRequest(key=k, policy="open-quota", limit=4, window=day)]
    )
    own = await client.should_allow(k, "open-quota")
    assert other[0].remaining == 3
    assert (own.allowed, own.limit) == (False, 2)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.batch([proto.ShouldAllowRequest(key=k, policy="default", limit=100)])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'default'" in (refused.value.details() or "")
    assert rich_details(refused.value) == ([], [("REQUEST_OVERRIDE_NOT_ALLOWED", "ratelimit.v1")])


async def test_reset_restores_the_full_budget(client: LimiterClient) -> None:
    for policy, limit in (("default", 10), ("bucket", 3), ("tiered", 2)):
        k = key()
        replies = [await client.should_allow(k, policy) for _ in range(limit + 1)]
        assert not replies[-1].allowed
        reply = await client.stub.Reset(proto.ResetRequest(key=k, policy=policy), timeout=5)
        assert reply.policy == policy
        fresh = await client.should_allow(k, policy)
        assert fresh.allowed and fresh.remaining == limit - 1


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (proto.ResetRequest(key=""), grpc.StatusCode.INVALID_ARGUMENT),
        (proto.ResetRequest(key="k" * 513), grpc.StatusCode.INVALID_ARGUMENT),
        (proto.ResetRequest(key="k", policy="gold"), grpc.StatusCode.NOT_FOUND),
        (proto.ResetRequest(key="k", policy="p" * 129), grpc.StatusCode.INVALID_ARGUMENT),
        (proto.ResetRequest(key="k", policy="default", limit=5), grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=["empty key", "long key", "unknown policy", "long policy", "override"],
)
async def test_reset_validates_like_a_decision(
    client: LimiterClient, request_: proto.ResetRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.Reset(request_, timeout=5)
    assert caught.value.code() == code


async def test_reset_through_the_client_library(client: LimiterClient) -> None:
    settings = LimiterSettings(limiter_addr=client.address, timeout_ms=2000)
    async with LibraryClient(settings) as library:
        k = key()
        decisions = [await library.decide(k, "tiered") for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert await library.reset(k, "tiered") == "tiered"
        assert (await library.decide(k, "tiered")).allowed
        with pytest.raises(Misconfigured):
            await library.reset(k, "gold")
    nothing = LimiterSettings(limiter_addr=f"127.0.0.1:{free_port()}", timeout_ms=200)
    async with LibraryClient(nothing) as unreachable:
        with pytest.raises(ResetFailed):
            await unreachable.reset(k, "tiered")
