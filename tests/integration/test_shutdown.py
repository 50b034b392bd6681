"""SIGTERM with RPCs in flight: they complete with real decisions, and the exit code is 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from devstack import ProcessGroup, free_port, start_redis, wait_until
from devstack.limiter import start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration


async def test_sigterm_drains_in_flight_rpcs(processes: ProcessGroup, tmp_path: Path) -> None:
    redis_server = start_redis(processes, "redis-shutdown", workdir=tmp_path / "redis")
    env = {
        "REDIS_URL": redis_server.url,
        "REDIS_TIMEOUT_MS": "10000",
        "LIMITER_DECISION_TIMEOUT_MS": "20000",
        "REDIS_MAX_CONNECTIONS": "32",  # every RPC below gets a round trip of its own
    }
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    calls: list[asyncio.Future[proto.ShouldAllowResponse]] = []
    with redis_server.client() as admin:
        # Hold every write so the RPCs below are still in flight at SIGTERM. Each is sent
        # once the one before is held in Redis, so each holds one blocked client: the
        # count proves the limiter has received and started every one of them.
        admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
        for index in range(10):
            calls.append(asyncio.ensure_future(client.should_allow(f"drain:{index}", timeout=20)))
            await asyncio.to_thread(
                wait_until,
                lambda held=index + 1: admin.info("clients")["blocked_clients"] >= held or None,
                timeout=10,
                waiting_for=f"{index + 1} limiter scripts to be held by CLIENT PAUSE",
            )
        node.process.signal(signal.SIGTERM)
        replies = await asyncio.gather(*calls)
    code = await asyncio.to_thread(node.process.wait_exit, 20)
    await client.close()
    assert code == 0
    assert [r.reason for r in replies] == [proto.Reason.REASON_WITHIN_LIMIT] * 10
    assert "stopped" in node.process.log_tail(5)
