"""``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` over gRPC against a real
limiter on real Redis, configured with envoyproxy/ratelimit's YAML (``LIMITER_ENVOY_CONFIG``).
Envoy itself is exercised by the edge tests; these speak its API through our stub."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import ProcessGroup, StandaloneRedis, free_port
from devstack.limiter import LimiterNode, start_limiter
from limiter_service.envoy import proto
from tests.integration.client import LimiterClient
from tests.integration.envoy_client import Code, Descriptor, EnvoyClient, Unit, descriptor
from tests.integration.test_bad_input import rich_details
from tests.integration.test_reload import wait_limit, wait_logged, wait_seen

pytestmark = pytest.mark.integration

CONFIG = """
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: hour, requests_per_unit: 2, name: per_ip}
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: banned
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: tier
    value: internal
    rate_limit: {unlimited: true}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: path
    rate_limit: {unit: hour, requests_per_unit: 100, name: any_path}
  - key: plan
    value: gold
    rate_limit:
      unit: hour
      requests_per_unit: 1000
      replaces: [{name: any_path}]
  - key: api
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: token_bucket, burst: 3}
"""


class Stack(NamedTuple):
    node: LimiterNode
    client: EnvoyClient
    redis: StandaloneRedis
    prefix: str


@pytest.fixture(scope="module")
def envoy_limiter(
    redis_server: StandaloneRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LimiterNode, str]]:
    workdir = tmp_path_factory.mktemp("envoy")
    config = workdir / "ratelimit.yaml"
    config.write_text(CONFIG)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": redis_server.url,
        "LIMITER_ENVOY_CONFIG": str(config),
        "LIMITER_KEY_PREFIX": prefix,
        "LIMITER_DENY_CACHE_SIZE": "0",
        # The health probe runs once at start-up: Redis's command counts are ours alone.
        "LIMITER_HEALTH_INTERVAL_MS": "60000",
    }
    with ProcessGroup(workdir / "logs") as group:
        yield start_limiter(group, "limiter", free_port(), env), prefix


@pytest.fixture
async def stack(
    envoy_limiter: tuple[LimiterNode, str], redis_server: StandaloneRedis
) -> AsyncIterator[Stack]:
    node, prefix = envoy_limiter
    client = EnvoyClient(node.address)
    yield Stack(node, client, redis_server, prefix)
    await client.close()


def unique() -> str:
    return uuid.uuid4().hex


def redis_now_s(redis: StandaloneRedis) -> float:
    with redis.client() as admin:
        seconds, micros = admin.time()
    return float(seconds) + float(micros) / 1e6


def keys(stack: Stack, text: str) -> list[bytes]:
    with stack.redis.client() as admin:
        return list(admin.scan_iter(match=f"{stack.prefix}:*{text}*"))


async def test_over_limit_with_the_rules_limit_and_epoch_aligned_reset(stack: Stack) -> None:
    ip = unique()
    before = redis_now_s(stack.redis)
    replies = [
        await stack.client.should_rate_limit("edge", [descriptor(("remote_address", ip))])
        for _ in range(3)
    ]
    after = redis_now_s(stack.redis)
    codes = [reply.overall_code for reply in replies]
    assert codes == [Code.OK, Code.OK, Code.OVER_LIMIT]
    first, _, third = (reply.statuses[0] for reply in replies)
    assert first.code == Code.OK and first.limit_remaining == 1
    assert third.code == Code.OVER_LIMIT and third.limit_remaining == 0
    assert first.current_limit == proto.RateLimitResponse.RateLimit(
        name="per_ip", requests_per_unit=2, unit=Unit.HOUR
    )
    # Windows aligned to the Unix epoch, as upstream: the reset is the next hour boundary.
    reset = first.duration_until_reset.seconds + first.duration_until_reset.nanos / 1e9
    if int(before // 3600) == int(after // 3600):  # no hour boundary in between
        assert 3600 - after % 3600 - 0.001 <= reset <= 3600 - before % 3600 + 0.001
    (key,) = keys(stack, ip)
    with stack.redis.client() as admin:
        assert admin.pttl(key) > 0


async def test_two_descriptors_all_or_nothing(stack: Stack) -> None:
    user = unique()
    reply = await stack.client.should_rate_limit(
        "edge", [descriptor(("user", user)), descriptor(("banned", "x"))]
    )
    assert reply.overall_code == Code.OVER_LIMIT
    assert [status.code for status in reply.statuses] == [Code.OK, Code.OVER_LIMIT]
    assert reply.statuses[1].current_limit.requests_per_unit == 0
    # The request ended OVER_LIMIT: its fitting descriptor consumed nothing.
    assert keys(stack, user) == []
    alone = await stack.client.should_rate_limit("edge", [descriptor(("user", user))])
    assert alone.statuses[0].limit_remaining == 4


async def test_shadow_mode_counts_but_never_denies(stack: Stack) -> None:
    trial = unique()
    before = stack.node.metrics()
    replies = [
        await stack.client.should_rate_limit("edge", [descriptor(("trial", trial))])
        for _ in range(3)
    ]
    assert [reply.overall_code for reply in replies] == [Code.OK] * 3
    after = stack.node.metrics()
    labels = {"domain": "edge", "key": "edge.trial", "outcome": "shadow_denied"}
    shadowed = (after.get("ratelimit_envoy_decisions_total", **labels) or 0) - (
        before.get("ratelimit_envoy_decisions_total", **labels) or 0
    )
    assert shadowed == 2


async def test_unlimited_never_touches_redis(stack: Stack) -> None:
    with stack.redis.client() as admin:
        admin.config_resetstat()
    reply = await stack.client.should_rate_limit("edge", [descriptor(("tier", "internal"))])
    assert reply.overall_code == Code.OK
    (status,) = reply.statuses
    assert status.limit_remaining == 2**32 - 1 and not status.HasField("current_limit")
    assert keys(stack, "tier=internal") == []
    with stack.redis.client() as admin:
        commands = admin.info("commandstats")
    assert not any(name in commands for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def test_a_per_descriptor_limit_override_has_its_own_counter(stack: Stack) -> None:
    ip = unique()
    overridden = Descriptor((("remote_address", ip),), override=(3, 2))  # 3 per MINUTE
    replies = [await stack.client.should_rate_limit("edge", [overridden]) for _ in range(4)]
    assert [r.overall_code for r in replies] == [Code.OK] * 3 + [Code.OVER_LIMIT]
    limit = replies[0].statuses[0].current_limit
    assert (limit.requests_per_unit, limit.unit) == (3, Unit.MINUTE)
    plain = await stack.client.should_rate_limit("edge", [descriptor(("remote_address", ip))])
    assert plain.statuses[0].limit_remaining == 1  # the rule's own counter is untouched


async def test_hits_addend_request_and_descriptor(stack: Stack) -> None:
    user = unique()
    reply = await stack.client.should_rate_limit("edge", [descriptor(("user", user))], 2)
    assert reply.statuses[0].limit_remaining == 3
    own = descriptor(("user", user), hits_addend=3)
    reply = await stack.client.should_rate_limit("edge", [own], hits_addend=2)
    assert reply.statuses[0].limit_remaining == 0
    # A descriptor's hits_addend 0 checks without counting: a full counter is not over.
    check = descriptor(("user", user), hits_addend=0)
    reply = await stack.client.should_rate_limit("edge", [check])
    assert (reply.overall_code, reply.statuses[0].limit_remaining) == (Code.OK, 0)
    reply = await stack.client.should_rate_limit("edge", [descriptor(("user", user))])
    assert reply.overall_code == Code.OVER_LIMIT
    # A cost above the limit is over the limit, and consumes nothing (0 is left anyway).
    other = unique()
    big = descriptor(("user", other), hits_addend=10**12)
    reply = await stack.client.should_rate_limit("edge", [big])
    assert reply.overall_code == Code.OVER_LIMIT
    assert keys(stack, other) == []


async def test_replaces_unmatched_and_unknown_domain(stack: Stack) -> None:
    path = unique()
    reply = await stack.client.should_rate_limit(
        "edge",
        [descriptor(("path", path)), descriptor(("plan", "gold")), descriptor(("nothing", "x"))],
    )
    replaced, gold, unmatched = reply.statuses
    assert not replaced.HasField("current_limit") and replaced.code == Code.OK
    assert gold.current_limit.requests_per_unit == 1000
    assert not unmatched.HasField("current_limit") and unmatched.code == Code.OK
    assert keys(stack, path) == []
    unknown = await stack.client.should_rate_limit("nope", [descriptor(("path", path))])
    assert unknown.overall_code == Code.OK and not unknown.statuses[0].HasField("current_limit")


async def test_token_bucket_extension(stack: Stack) -> None:
    caller = unique()
    replies = [
        await stack.client.should_rate_limit("edge", [descriptor(("api", caller))])
        for _ in range(4)
    ]
    assert [r.overall_code for r in replies] == [Code.OK] * 3 + [Code.OVER_LIMIT]
    assert keys(stack, caller)[0].endswith(b":tb")


@pytest.mark.parametrize(
    ("descriptors", "domain", "field"),
    [
        ([descriptor(("a", "b"))], "", "domain"),
        ([], "edge", "descriptors"),
        ([descriptor(("a", "b")), descriptor(("", "x"))], "edge", "descriptors[1].entries[0].key"),
        ([Descriptor(())], "edge", "descriptors[0].entries"),
        ([Descriptor((("a", "b"),), override=(1, 99))], "edge", "descriptors[0].limit.unit"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stack: Stack, descriptors: list[Descriptor], domain: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.client.should_rate_limit(domain, descriptors)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(caught.value) == ([field], [])


def test_reflection_and_health_name_the_service(envoy_limiter: tuple[LimiterNode, str]) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    node, _ = envoy_limiter
    with node.channel() as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=proto.SERVICE_NAME), timeout=5)
    assert proto.SERVICE_NAME in services
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_not_served_without_a_configuration(processes: ProcessGroup) -> None:
    node = start_limiter(processes, "limiter", free_port(), {})
    with node.channel() as channel:
        stub = proto.RateLimitServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ShouldRateLimit(proto.RateLimitRequest(domain="d"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def _write(path: Path, requests_per_unit: int) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_text(
        "domain: reload\ndescriptors:\n  - key: k\n"
        f"    rate_limit: {{unit: hour, requests_per_unit: {requests_per_unit}}}\n"
    )
    os.replace(staged, path)


async def _limit(client: EnvoyClient) -> int:
    reply = await client.should_rate_limit("reload", [descriptor(("k", unique()))])
    return reply.statuses[0].current_limit.requests_per_unit


async def _wait_limit(client: EnvoyClient, expected: int) -> None:
    await wait_seen(functools.partial(_limit, client), expected)


async def test_reload_on_file_change_and_sighup_refusing_a_broken_file_next_to_policies(
    processes: ProcessGroup, tmp_path: Path
) -> None:
    directory = tmp_path / "envoy"
    directory.mkdir()
    path = directory / "reload.yaml"
    _write(path, 5)
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  default: {limit: 3, window: 1h}\n")
    env = {
        "LIMITER_ENVOY_CONFIG": str(directory),
        "LIMITER_POLICIES": str(policies),
        "LIMITER_POLICIES_WATCH_MS": "100",
    }
    node = start_limiter(processes, "limiter", free_port(), env)
    client = EnvoyClient(node.address)
    ours = LimiterClient(node.address)
    try:
        assert (await ours.should_allow(unique(), dry_run=True)).limit == 3
        assert await _limit(client) == 5
        _write(path, 7)
        await _wait_limit(client, 7)
        path.write_text("domain: reload\ndescriptors:\n  - key: k\n    rate_limit: {unit: eon}\n")
        await wait_logged(node, "envoy config reload (file changed) refused")
        assert await _limit(client) == 7
        _write(path, 9)
        policies.write_text("policies:\n  default: {limit: 4, window: 1h}\n")
        node.process.signal(signal.SIGHUP)  # reloads both sources
        await _wait_limit(client, 9)
        await wait_limit(ours, 4)
    finally:
        await client.close()
        await ours.close()
    log = node.process.log_tail(300)
    assert "reload.yaml: descriptors[0].rate_limit.unit: 'eon' is not one of" in log


def test_invalid_configuration_stops_start_up_naming_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.yaml"
    path.write_text("domain: d\ndescriptors:\n  - key: a\n  - key: b\n    rate_limit: {unit: x}\n")
    env = {**os.environ, "LIMITER_ENVOY_CONFIG": str(path), "LIMITER_METRICS_LISTEN": ""}
    env["LIMITER_LISTEN"] = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "limiter_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "ratelimit.yaml: descriptors[1].rate_limit.unit: 'x' is not one of" in done.stderr


def test_check_config_accepts_envoy_files(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(CONFIG)
    bad.write_text("domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, burst: 2}}]\n")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "limiter_service", "check-config", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    ok = check("--envoy", str(good))
    assert ok.returncode == 0 and "8 rules in domains edge" in ok.stdout
    refused = check("--envoy", str(bad))
    assert refused.returncode == 2
    assert "bad.yaml: descriptors[0].rate_limit.burst: only algorithm token_bucket" in (
        refused.stderr
    )


@pytest.mark.parametrize(("mode", "code"), [("open", Code.OK), ("closed", Code.OVER_LIMIT)])
async def test_failure_mode_answers_when_redis_is_down(
    processes: ProcessGroup, tmp_path: Path, mode: str, code: int
) -> None:
    config = tmp_path / "ratelimit.yaml"
    config.write_text(CONFIG)
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
        "LIMITER_ENVOY_CONFIG": str(config),
        "LIMITER_FAILURE_MODE": mode,
    }
    node = start_limiter(processes, "limiter", free_port(), env, wait_serving=False)
    client = EnvoyClient(node.address)
    try:
        reply = await client.should_rate_limit(
            "edge", [descriptor(("user", unique())), descriptor(("nothing", "x"))]
        )
    finally:
        await client.close()
    assert reply.overall_code == code
    assert [status.code for status in reply.statuses] == [code, Code.OK]
    assert reply.statuses[0].current_limit.requests_per_unit == 5
    with node.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=proto.SERVICE_NAME), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_on_redis_cluster_counters_stay_in_their_slot_and_refusals_consume_nothing(
    processes: ProcessGroup, tmp_path: Path
) -> None:
    from devstack.redis_cluster import RedisCluster, key_slot

    config = tmp_path / "ratelimit.yaml"
    config.write_text(CONFIG)
    with RedisCluster(tmp_path / "cluster", node_timeout_ms=1000) as cluster:
        env = {
            "REDIS_CLUSTER_NODES": cluster.nodes_env(),
            "REDIS_PASSWORD": cluster.password,
            "LIMITER_ENVOY_CONFIG": str(config),
            "LIMITER_DENY_CACHE_SIZE": "0",
        }
        node = start_limiter(processes, "limiter", free_port(), env)
        client = EnvoyClient(node.address)
        owners = cluster.slot_owners()
        try:
            # Users until two of them are counted on different primaries.
            users: dict[object, str] = {}
            while len(users) < 2:
                user = unique()
                users.setdefault(owners[key_slot(f"{{envoy/edge|user={user}}}")], user)
            first, second = users.values()
            both = [descriptor(("user", first)), descriptor(("user", second))]
            refused = await client.should_rate_limit("edge", [*both, descriptor(("banned", "x"))])
            assert refused.overall_code == Code.OVER_LIMIT
            accepted = await client.should_rate_limit("edge", both)
        finally:
            await client.close()
        assert [status.limit_remaining for status in accepted.statuses] == [4, 4]
        for user in (first, second):
            owner = owners[key_slot(f"{{envoy/edge|user={user}}}")]
            with cluster.client(owner) as primary:
                (key,) = primary.keys(f"*user={user}*")
                assert primary.hget(key, "n") == "1"  # only the accepted request counted
