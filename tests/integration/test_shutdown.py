"""SIGTERM with RPCs in flight: they complete with real decisions, and the exit code is 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from devstack import ProcessGroup, free_port, start_redis, wait_until
from devstack.limiter import start_limiter
from limiter_service import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration


async def test_sigterm_drains_in_flight_rpcs(processes: ProcessGroup, tmp_path: Path) -> None:
    redis_server = start_redis(processes, "redis-shutdown", workdir=tmp_path / "redis")
    try:
        env = {
            "REDIS_URL": redis_server.url,
            "REDIS_TIMEOUT_MS": "10000",
            "LIMITER_DECISION_TIMEOUT_MS": "20000",
        }
        node = start_limiter(processes, "limiter", free_port(), env)
        client = LimiterClient(node.address)
        with redis_server.client() as admin:
            # Hold every write for a while so the RPCs below are still in flight at SIGTERM.
            admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
            calls = [
                asyncio.ensure_future(client.should_allow(f"drain:{i}", timeout=20))
                for i in range(20)
            ]
            await asyncio.to_thread(
                wait_until,
                lambda: admin.info("clients")["blocked_clients"] >= 1 or None,
                timeout=10,
                waiting_for="the limiter's script to be held by CLIENT PAUSE",
            )
            node.process.signal(signal.SIGTERM)
            replies = await asyncio.gather(*calls)
        code = await asyncio.to_thread(node.process.wait_exit, 20)
        await client.close()
    finally:
        redis_server.process.terminate()
    assert code == 0
    assert all(r.reason == proto.Reason.REASON_WITHIN_LIMIT for r in replies)
    assert "stopped" in node.process.log_tail(5)
