"""``LIMITER_COALESCE_WINDOW_US`` on a real limiter and Redis: under a burst of concurrent
calls, the limiter has more work than CPU, so with a window it finishes the RPCs it has
before sending and many decisions share one ``EVALSHA``; without one, each turn's calls go
out on their own. Round trips are counted in Redis's ``INFO commandstats``."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from devstack import ProcessGroup, StandaloneRedis, free_port
from devstack.limiter import start_limiter
from tests.integration.client import LimiterClient
from tests.integration.test_deny_cache import evalsha_calls

pytestmark = pytest.mark.integration

BURST = 300


async def _evalsha_for_a_burst(
    redis_server: StandaloneRedis, processes: ProcessGroup, tmp_path: Path, window_us: int
) -> int:
    path = tmp_path / "policies.yaml"
    path.write_text("policies:\n  default: {limit: 5, window: 1h}\n")
    env = {
        "REDIS_URL": redis_server.url,
        "LIMITER_POLICIES": str(path),
        "LIMITER_COALESCE_WINDOW_US": str(window_us),
        "REDIS_TIMEOUT_MS": "3000",
        "LIMITER_DECISION_TIMEOUT_MS": "10000",
        # The health probe runs the script too; keep it out of the counts.
        "LIMITER_HEALTH_INTERVAL_MS": "60000",
    }
    node = start_limiter(processes, f"limiter-{window_us}", free_port(), env)
    client = LimiterClient(node.address)
    try:
        assert (await client.should_allow(f"warm:{uuid.uuid4()}", timeout=10)).allowed
        before = evalsha_calls(redis_server)
        run = uuid.uuid4()
        answers = await asyncio.gather(
            *(client.should_allow(f"burst:{run}:{i}", timeout=10) for i in range(BURST))
        )
        assert all(answer.allowed for answer in answers)  # every decision made, none lost
        trips = evalsha_calls(redis_server) - before
        # The limiter's own account agrees: every decision in one of these round trips.
        samples = node.metrics()
        assert samples.get("ratelimit_backend_decisions_per_round_trip_sum") == BURST + 1
        assert samples.get("ratelimit_backend_decisions_per_round_trip_count") == trips + 1
        return trips
    finally:
        await client.close()
        node.process.terminate()


async def test_a_window_makes_a_burst_share_round_trips(
    redis_server: StandaloneRedis, processes: ProcessGroup, tmp_path: Path
) -> None:
    without = await _evalsha_for_a_burst(redis_server, processes, tmp_path, 0)
    with_window = await _evalsha_for_a_burst(redis_server, processes, tmp_path, 5000)
    print(f"EVALSHA for {BURST} concurrent decisions: window 0 -> {without}, 5 ms -> {with_window}")
    assert with_window * 4 <= without
