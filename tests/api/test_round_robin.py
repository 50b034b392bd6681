"""Two limiter replicas behind one client channel: round_robin spreads the calls, and a
replica killed mid-load costs no request (its calls are retried on the other one)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from devstack import ApiNode, LimiterNode, ProcessGroup
from tests.api.api_stack import RELAXED_TIMEOUT_MS, launch_api, launch_limiter, wait_apis

pytestmark = pytest.mark.integration

CONCURRENCY = 8
REQUESTS = 600
KILL_AFTER = 200  # requests answered before one replica is killed
RATELIMIT_RE = re.compile(r'^"default";r=(\d+);t=\d+$')


@dataclass(frozen=True)
class Replicas:
    first: LimiterNode
    second: LimiterNode
    api: ApiNode


@pytest.fixture
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with ProcessGroup(tmp_path_factory.mktemp("api-round-robin")) as group:
        # Memory backends: each replica counts on its own, which shows who answered.
        policy = {"RATE_LIMIT": "100000000", "LIMITER_DECISION_TIMEOUT_MS": "2000"}
        first = launch_limiter(group, "limiter-a", policy)
        second = launch_limiter(group, "limiter-b", policy)
        api = launch_api(
            group,
            "api-rr",
            {
                "LIMITER_ADDR": f"ipv4:{first.address},{second.address}",
                # Closed: a request without a decision would be a 503, not a silent 200.
                "LIMITER_FAILURE_MODE": "closed",
                # This test is about losing a replica, not about a busy machine's latency.
                "LIMITER_TIMEOUT_MS": str(RELAXED_TIMEOUT_MS),
            },
        )
        wait_apis(api)
        yield Replicas(first, second, api)


@dataclass
class Outcome:
    """Every response's status and ``RateLimit`` r (-1: no header, i.e. not counted)."""

    statuses: list[int] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)


async def _load(url: str, requests: int, outcome: Outcome, mark: int) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        while len(outcome.statuses) < requests:
            response = await http.get(url, headers={"X-Real-IP": "198.51.100.77"})
            outcome.statuses.append(response.status_code)
            found = RATELIMIT_RE.match(response.headers.get("RateLimit", ""))
            outcome.remaining.append(int(found.group(1)) if found else -1)
            if len(outcome.statuses) >= mark:
                outcome.progress.set()


async def test_killing_one_replica_loses_no_request(replicas: Replicas) -> None:
    url = f"{replicas.api.url}/limited_endpoint"
    outcome = Outcome()
    load = asyncio.gather(*(_load(url, REQUESTS, outcome, KILL_AFTER) for _ in range(CONCURRENCY)))
    await asyncio.wait_for(outcome.progress.wait(), timeout=30)
    killed_at = len(outcome.statuses)
    replicas.first.process.kill()
    await asyncio.wait_for(load, timeout=60)

    before = outcome.remaining[:killed_at]
    # Both replicas were counting: each remaining value shows up once per replica.
    assert len(before) > len(set(before))
    assert len(outcome.statuses) - killed_at >= REQUESTS - KILL_AFTER - CONCURRENCY
    assert [status for status in outcome.statuses if status != 200] == []
    assert -1 not in outcome.remaining  # every request was counted, none failed open
    assert replicas.second.process.is_running()
