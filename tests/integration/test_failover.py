"""Failover: the limiter follows Sentinel through a crash, a planned switch and a flushed
script cache, answering every RPC (the failure mode covers the gap, and is counted)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import ProcessGroup, RedisTopology, free_port
from devstack.limiter import LimiterNode, start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration

DOWN_AFTER_MS = 1000
AUTHORITATIVE = {proto.Reason.REASON_WITHIN_LIMIT, proto.Reason.REASON_OVER_LIMIT}
FAIL_MODE = {proto.Reason.REASON_FAIL_OPEN, proto.Reason.REASON_FAIL_CLOSED}


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[RedisTopology]:
    with RedisTopology(tmp_path / "topology", down_after_ms=DOWN_AFTER_MS) as running:
        yield running


# Token bucket for the keys that must stay exhausted across a failover: no window boundary
# can refill them during the test.
POLICIES = """
policies:
  exhausted: {limit: 10, window: 1h, algorithm: token_bucket, match: "exhausted:"}
  default: {limit: 10, window: 60s}
"""


def limiter_env(topology: RedisTopology, tmp_path: Path) -> dict[str, str]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    return {
        "LIMITER_POLICIES": str(policies),
        "SENTINEL_HOSTS": topology.sentinel_hosts_env(),
        "REDIS_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password,
        "REDIS_TIMEOUT_MS": "100",
        "LIMITER_DECISION_TIMEOUT_MS": "250",
        # These tests watch the failure mode cover the gap; the deny cache would answer
        # the load's exhausted keys without Redis (tests/integration/test_deny_cache.py).
        "LIMITER_DENY_CACHE_SIZE": "0",
    }


@dataclass
class Load:
    """Continuous ShouldAllow traffic plus a health watcher, recording what came back."""

    client: LimiterClient
    answers: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    health: list[tuple[float, int]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, index: int) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                reply = await self.client.should_allow(f"load:{index}:{n % 20}", timeout=2)
            except grpc.aio.AioRpcError as exc:
                self.errors.append(f"{exc.code()}: {exc.details()}")
            else:
                self.answers.append((time.monotonic(), reply.reason))

    async def watch_health(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.client.channel)
        while not self.stopping.is_set():
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            self.health.append((time.monotonic(), reply.status))
            await asyncio.sleep(0.05)

    def start(self, workers: int = 8) -> list[asyncio.Future[None]]:
        tasks = [asyncio.ensure_future(self.worker(i)) for i in range(workers)]
        return [*tasks, asyncio.ensure_future(self.watch_health())]

    async def run_for(self, seconds: float) -> None:
        """Let the load run on for ``seconds`` (the load's duration, not a readiness wait)."""
        await asyncio.sleep(seconds)


async def exhaust(client: LimiterClient, key: str) -> None:
    replies = [await client.should_allow(key) for _ in range(11)]
    assert [r.allowed for r in replies] == [True] * 10 + [False]


async def test_master_crash_under_load(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path
) -> None:
    node: LimiterNode = start_limiter(
        processes, "limiter", free_port(), limiter_env(topology, tmp_path)
    )
    client = LimiterClient(node.address)
    exhausted = f"exhausted:{uuid.uuid4()}"
    await exhaust(client, exhausted)
    await asyncio.to_thread(topology.wait_replicated)
    load = Load(client)
    tasks = load.start()
    await load.run_for(1.0)
    killed_at = time.monotonic()
    old = await asyncio.to_thread(topology.kill_master)
    new = await asyncio.to_thread(topology.wait_for_master_change, old, 30)
    switched_at = time.monotonic()
    await load.run_for(2.0)
    load.stopping.set()
    await asyncio.gather(*tasks)
    after = await client.should_allow(exhausted)
    await client.close()

    assert load.errors == []
    fallbacks = [t for t, reason in load.answers if reason in FAIL_MODE]
    assert fallbacks, "the master was down for over a second: the failure mode must have answered"
    resumed = [t for t, reason in load.answers if reason in AUTHORITATIVE and t > fallbacks[-1]]
    assert resumed, "authoritative decisions never resumed"
    gap = resumed[0] - killed_at
    assert gap <= DOWN_AFTER_MS / 1000 + 3.0, f"authoritative again only after {gap:.2f}s"
    statuses = [s for t, s in load.health if t > killed_at]
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    serving = health_pb2.HealthCheckResponse.SERVING
    assert not_serving in statuses
    assert statuses[-1] == serving
    # Counters survived: the key exhausted before the crash is still exhausted.
    assert after.reason == proto.Reason.REASON_OVER_LIMIT
    assert new != old
    print(
        f"\nfailover: {len(fallbacks)} fail-mode answers of {len(load.answers)}; "
        f"authoritative again {gap:.2f}s after SIGKILL; sentinels agreed after "
        f"{switched_at - killed_at:.2f}s"
    )


async def test_planned_failover_loses_nothing(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path
) -> None:
    node = start_limiter(processes, "limiter", free_port(), limiter_env(topology, tmp_path))
    client = LimiterClient(node.address)
    exhausted = f"exhausted:{uuid.uuid4()}"
    await exhaust(client, exhausted)
    await asyncio.to_thread(topology.wait_replicated)
    changes = "ratelimit_master_changes_total"
    assert node.metrics().total(changes, kind="address") == 0  # finding it is no change
    load = Load(client)
    tasks = load.start()
    old = topology.current_master()
    new = await asyncio.to_thread(topology.planned_failover, 30)
    await load.run_for(1.5)
    load.stopping.set()
    await asyncio.gather(*tasks)
    counted = f"ip:{uuid.uuid4()}"
    reply = await client.should_allow(counted)
    after = await client.should_allow(exhausted)
    await client.close()

    assert new != old
    assert load.errors == []
    assert load.answers[-1][1] in AUTHORITATIVE
    # The switch is counted (the first discovery of the master is not a change).
    assert node.metrics().total(changes, kind="address") >= 1
    assert reply.reason == proto.Reason.REASON_WITHIN_LIMIT
    assert after.reason == proto.Reason.REASON_OVER_LIMIT
    with topology.client(new) as master:
        keys = master.keys(f"*{counted}*")
        assert len(keys) == 1, "the decision after the switch must be written to the new master"
        assert master.pttl(keys[0]) > 0


async def test_script_flush_is_survived(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path
) -> None:
    node = start_limiter(processes, "limiter", free_port(), limiter_env(topology, tmp_path))
    client = LimiterClient(node.address)
    key = f"ip:{uuid.uuid4()}"
    first = await client.should_allow(key)
    with topology.client(topology.current_master()) as master:
        master.script_flush()
    second = await client.should_allow(key)
    await client.close()
    assert (first.reason, first.remaining) == (proto.Reason.REASON_WITHIN_LIMIT, 9)
    assert (second.reason, second.remaining) == (proto.Reason.REASON_WITHIN_LIMIT, 8)
    assert "loading rate-limit scripts" in node.process.log_tail(50)


async def test_password_protected_sentinels(processes: ProcessGroup, tmp_path: Path) -> None:
    with RedisTopology(tmp_path / "guarded", sentinel_password="sentinel-secret") as guarded:
        env = {
            "SENTINEL_HOSTS": guarded.sentinel_hosts_env(),
            "REDIS_MASTER": guarded.master_name,
            "REDIS_PASSWORD": guarded.password,
        }
        without = start_limiter(processes, "no-password", free_port(), env, wait_serving=False)
        assert without.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        node = start_limiter(
            processes, "limiter", free_port(), {**env, "SENTINEL_PASSWORD": "sentinel-secret"}
        )
        client = LimiterClient(node.address)
        reply = await client.should_allow(f"ip:{uuid.uuid4()}")
        await client.close()
    assert reply.reason == proto.Reason.REASON_WITHIN_LIMIT
