"""A master that crashes and restarts before Sentinel reacts keeps every budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from devstack import ProcessGroup, RedisTopology, free_port, wait_until
from devstack.limiter import start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration

AUTHORITATIVE = {proto.Reason.REASON_WITHIN_LIMIT, proto.Reason.REASON_OVER_LIMIT}
# A day-long token bucket: no refill can blur the count during the test (one unit per 864 s).
POLICIES = "policies:\n  default: {limit: 100, window: 24h, algorithm: token_bucket}\n"
KEYS = 5


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[RedisTopology]:
    # Sentinel must not react before the restart: a long down-after.
    with RedisTopology(tmp_path / "topology", down_after_ms=10_000) as running:
        yield running


async def test_master_restarted_before_failover_keeps_every_budget(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path
) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    env = {
        "LIMITER_POLICIES": str(policies),
        "SENTINEL_HOSTS": topology.sentinel_hosts_env(),
        "REDIS_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password,
        "LIMITER_HEALTH_INTERVAL_MS": "100",
    }
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    keys = [f"durable:{uuid.uuid4()}" for _ in range(KEYS)]
    try:
        spent = await client.batch([proto.ShouldAllowRequest(key=k, cost=60) for k in keys])
        assert [r.remaining for r in spent] == [40] * KEYS
        master = topology.current_master()
        # SIGKILL, then start it again from its own config at once (tens of milliseconds).
        topology.node_for(master).process.kill()
        topology.restart_node(master)
        assert topology.current_master() == master, "Sentinel failed over: not this scenario"

        async def authoritative() -> bool:
            # A write: the restarted master refuses writes (NOREPLICAS) until a replica
            # has resynced from it.
            reply = await client.should_allow(f"probe:{uuid.uuid4()}")
            return reply.reason in AUTHORITATIVE

        await wait_async(authoritative, "authoritative answers from the restarted master")
        after = await client.batch(
            [proto.ShouldAllowRequest(key=k) for k in keys for _ in range(100)]
        )
        allowed = sum(reply.allowed for reply in after)
        assert {reply.reason for reply in after} <= AUTHORITATIVE
        assert allowed == 40 * KEYS, f"{allowed} admitted after the restart: budgets were reset"
        wait_until(
            lambda: True if "restarted (run_id" in node.process.log_tail(500) else None,
            timeout=10.0,
            waiting_for="the limiter to log the master's restart",
            watch=(node.process,),
        )
        # ... and count it: a restart at the same address, not a master change.
        samples = node.metrics()
        assert samples.get("ratelimit_master_changes_total", kind="restart") == 1
        assert samples.get("ratelimit_master_changes_total", kind="address") == 0
    finally:
        await client.close()


async def wait_async(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0
) -> None:
    """Poll ``check`` until it returns true (a readiness wait)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
