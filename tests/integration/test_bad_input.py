"""Bad input gets the right status and a message naming the problem; Redis sees nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from devstack import ProcessGroup, StandaloneRedis, free_port
from devstack.limiter import start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient
from tests.integration.raw_calls import raw_method

pytestmark = pytest.mark.integration

# Commands a healthy idle limiter may send on its own (health checks, new connections).
HOUSEKEEPING = {"ping", "info", "client|setinfo", "client|setname", "hello", "auth", "select"}


def data_commands(redis_server: StandaloneRedis) -> dict[str, int]:
    with redis_server.client() as client:
        stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in HOUSEKEEPING
    }


@pytest.fixture
async def client(
    redis_server: StandaloneRedis, processes: ProcessGroup, tmp_path: Path
) -> AsyncIterator[LimiterClient]:
    path = tmp_path / "policies.yaml"
    path.write_text(
        "policies:\n  default: {limit: 10, window: 60s}\n  tight: {limit: 3, window: 1s}\n"
    )
    env = {"REDIS_URL": redis_server.url, "LIMITER_POLICIES": str(path)}
    node = start_limiter(processes, "limiter", free_port(), env)
    limiter = LimiterClient(node.address)
    yield limiter
    await limiter.close()


def rich_details(error: grpc.aio.AioRpcError) -> tuple[list[str], list[tuple[str, str]]]:
    """The ``google.rpc`` details the server attached: BadRequest field names and
    (ErrorInfo reason, domain) pairs, decoded with grpcio-status, not our client."""
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin trailer"
    fields: list[str] = []
    infos: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append((info.reason, info.domain))
    return fields, infos


BIG = "k" * 513
CASES = [
    (
        "empty key",
        [proto.ShouldAllowRequest(key="")],
        grpc.StatusCode.INVALID_ARGUMENT,
        "key must not be empty",
        "key",
    ),
    (
        "key too long",
        [proto.ShouldAllowRequest(key=BIG)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "513 bytes; the maximum is 512",
        "key",
    ),
    (
        "unknown policy",
        [proto.ShouldAllowRequest(key="k", policy="gold")],
        grpc.StatusCode.NOT_FOUND,
        "unknown policy 'gold'; known policies: default, tight",
        "UNKNOWN_POLICY",
    ),
    (
        "cost over capacity",
        [proto.ShouldAllowRequest(key="k", policy="tight", cost=4)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "capacity 3",
        "cost",
    ),
]


@pytest.mark.parametrize(
    ("name", "requests", "code", "message", "detail"), CASES, ids=[c[0] for c in CASES]
)
async def test_single_and_batch_bad_input(
    client: LimiterClient,
    redis_server: StandaloneRedis,
    name: str,
    requests: list[proto.ShouldAllowRequest],
    code: grpc.StatusCode,
    message: str,
    detail: str,
) -> None:
    """``detail`` is the BadRequest field (the batch's is ``requests[1].<field>``), or the
    ErrorInfo reason when it is upper case."""
    before = data_commands(redis_server)
    with pytest.raises(grpc.aio.AioRpcError) as single:
        r = requests[0]
        await client.should_allow(r.key, r.policy, r.cost)
    assert single.value.code() == code
    assert message in (single.value.details() or "")
    assert "Traceback" not in (single.value.details() or "")
    fields, infos = rich_details(single.value)
    if detail.isupper():
        assert (fields, infos) == ([], [(detail, "ratelimit.v1")])
    else:
        assert (fields, infos) == ([detail], [])
    good = proto.ShouldAllowRequest(key=f"good:{uuid.uuid4()}")
    with pytest.raises(grpc.aio.AioRpcError) as batch:
        await client.batch([good, *requests])
    assert batch.value.code() == code
    assert message in (batch.value.details() or "")
    fields, infos = rich_details(batch.value)
    if detail.isupper():
        assert (fields, infos) == ([], [(detail, "ratelimit.v1")])
    else:
        assert (fields, infos) == ([f"requests[1].{detail}"], [])
    assert data_commands(redis_server) == before, "Redis saw a command for a refused request"
    # The good item of the refused batch consumed nothing.
    fresh = await client.should_allow(good.key)
    assert fresh.remaining == 9


async def test_batch_over_1000_items(client: LimiterClient, redis_server: StandaloneRedis) -> None:
    before = data_commands(redis_server)
    items = [proto.ShouldAllowRequest(key=f"k{i}") for i in range(1001)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.batch(items)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1001 requests; the maximum is 1000" in (caught.value.details() or "")
    assert rich_details(caught.value) == (["requests"], [])
    assert data_commands(redis_server) == before


async def test_message_over_64_kib(client: LimiterClient, redis_server: StandaloneRedis) -> None:
    before = data_commands(redis_server)
    items = [proto.ShouldAllowRequest(key="k" * 500) for _ in range(140)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.batch(items)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (caught.value.details() or "")
    assert data_commands(redis_server) == before


async def test_valid_batch_is_one_round_trip_and_ordered(
    client: LimiterClient, redis_server: StandaloneRedis
) -> None:
    key = f"batch:{uuid.uuid4()}"
    before = data_commands(redis_server)
    responses = await client.batch(
        [proto.ShouldAllowRequest(key=key, policy="tight") for _ in range(4)]
        + [proto.ShouldAllowRequest(key=key)]  # same key, other policy: its own counter
    )
    after = data_commands(redis_server)
    assert [r.allowed for r in responses] == [True, True, True, False, True]
    assert [r.remaining for r in responses] == [2, 1, 0, 0, 9]
    assert [r.policy for r in responses] == ["tight"] * 4 + ["default"]
    assert after.get("evalsha", 0) - before.get("evalsha", 0) == 1


async def test_should_allow_is_one_round_trip(
    client: LimiterClient, redis_server: StandaloneRedis
) -> None:
    await client.should_allow(f"warm:{uuid.uuid4()}")  # scripts loaded, connection open
    before = data_commands(redis_server)
    reply = await client.should_allow(f"one:{uuid.uuid4()}")
    after = data_commands(redis_server)
    assert reply.reason == proto.Reason.REASON_WITHIN_LIMIT
    changed = {name for name in after if after[name] != before.get(name, 0)}
    # Only the script and the commands it runs inside Redis; nothing sent besides EVALSHA.
    assert after["evalsha"] - before.get("evalsha", 0) == 1
    assert changed <= {"evalsha", "time", "hmget", "hget", "hset", "pexpire"}


def _invalid_utf8_key() -> bytes:
    """A ShouldAllowRequest whose key (field 1, length-delimited) is not UTF-8."""
    return b"\x0a\x04k\xff\xfe!"


async def test_undecodable_request_is_invalid_argument_without_traceback(
    client: LimiterClient, redis_server: StandaloneRedis, processes: ProcessGroup
) -> None:
    before = data_commands(redis_server)
    with grpc.insecure_channel(client.address) as channel:
        call = raw_method(channel, "ShouldAllow")
        for _ in range(50):
            with pytest.raises(grpc.RpcError) as caught:
                call(_invalid_utf8_key(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "bad UTF-8" in (caught.value.details() or "")
    assert rich_details(caught.value) == (["request"], [])
    assert data_commands(redis_server) == before
    (limiter,) = [p for p in processes.processes if p.name == "limiter"]
    log = limiter.log_tail(10_000)
    assert "Traceback" not in log
    # 50 refusals, one rate-limited line.
    assert log.count("refused an undecodable request") == 1


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        (
            "p" * 129,
            grpc.StatusCode.INVALID_ARGUMENT,
            "policy name is 129 bytes; the maximum is 128",
        ),
        ("p" * 60_000, grpc.StatusCode.INVALID_ARGUMENT, "policy name is 60000 bytes"),
        ("p" * 128, grpc.StatusCode.NOT_FOUND, "unknown policy 'pppp"),
    ],
    ids=["129 bytes", "60 KB", "128 bytes unknown"],
)
async def test_policy_names_are_bounded_and_never_echoed_whole(
    client: LimiterClient, policy: str, code: grpc.StatusCode, expected: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.should_allow("k", policy)
    details = caught.value.details() or ""
    assert caught.value.code() == code
    assert expected in details
    assert len(details) < 300, "the name was echoed whole"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        assert rich_details(caught.value) == (["policy"], [])
