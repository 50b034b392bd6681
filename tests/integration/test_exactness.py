"""Exactness: 1000 concurrent ShouldAllow RPCs on one key with limit 100 -> exactly 100
allowed, for every algorithm; on one limiter and across two limiters sharing Redis."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import ProcessGroup, RedisTopology, StandaloneRedis, free_port
from devstack.limiter import start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration

POLICIES = """
policies:
  fw: {limit: 100, window: 1h, algorithm: fixed_window, match: "fw:"}
  sw: {limit: 100, window: 1h, algorithm: sliding_window, match: "sw:"}
  tb: {limit: 100, window: 1h, algorithm: token_bucket, match: "tb:"}
"""
# Generous timeouts: this test is about counting, not about the failure mode, and a busy
# two-core machine must not turn a slow answer into a fail-open one.
PATIENT = {"REDIS_TIMEOUT_MS": "3000", "LIMITER_DECISION_TIMEOUT_MS": "20000"}


def policies_file(tmp_path: Path) -> str:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    return str(path)


async def hammer(
    clients: list[LimiterClient], key: str, total: int = 1000
) -> collections.Counter[proto.Reason]:
    calls = [clients[i % len(clients)].should_allow(key, timeout=30) for i in range(total)]
    responses = await asyncio.gather(*calls)
    reasons = collections.Counter(r.reason for r in responses)
    allowed = sum(r.allowed for r in responses)
    assert allowed == reasons[proto.Reason.REASON_WITHIN_LIMIT]
    return reasons


@pytest.mark.parametrize("algorithm", ["fw", "sw", "tb"])
async def test_one_limiter_on_redis(
    redis_server: StandaloneRedis, processes: ProcessGroup, tmp_path: Path, algorithm: str
) -> None:
    env = {"REDIS_URL": redis_server.url, "LIMITER_POLICIES": policies_file(tmp_path), **PATIENT}
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    try:
        reasons = await hammer([client], f"{algorithm}:{uuid.uuid4()}")
    finally:
        await client.close()
    assert reasons == {proto.Reason.REASON_WITHIN_LIMIT: 100, proto.Reason.REASON_OVER_LIMIT: 900}


async def test_one_limiter_in_memory(processes: ProcessGroup, tmp_path: Path) -> None:
    env = {"LIMITER_POLICIES": policies_file(tmp_path)}
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    try:
        for algorithm in ("fw", "sw", "tb"):
            reasons = await hammer([client], f"{algorithm}:{uuid.uuid4()}")
            assert reasons[proto.Reason.REASON_WITHIN_LIMIT] == 100, algorithm
    finally:
        await client.close()


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTopology]:
    with RedisTopology(tmp_path_factory.mktemp("exact-topology")) as running:
        yield running


async def test_two_limiters_share_sentinel_backed_redis(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path
) -> None:
    env = {
        "SENTINEL_HOSTS": topology.sentinel_hosts_env(),
        "REDIS_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password,
        "LIMITER_POLICIES": policies_file(tmp_path),
        **PATIENT,
    }
    nodes = [start_limiter(processes, f"limiter-{i}", free_port(), env) for i in (1, 2)]
    clients = [LimiterClient(node.address) for node in nodes]
    try:
        for algorithm in ("fw", "sw", "tb"):
            reasons = await hammer(clients, f"{algorithm}:{uuid.uuid4()}")
            assert reasons == {
                proto.Reason.REASON_WITHIN_LIMIT: 100,
                proto.Reason.REASON_OVER_LIMIT: 900,
            }, algorithm
    finally:
        for client in clients:
            await client.close()
