"""Deny cache on a real Redis: a flood on an over-limit key costs Redis nothing until
``retry_after``; on the real scripts with an injected clock and a modelled network delay,
the cache never denies what Redis would allow, except within that delay of the boundary;
and the delay itself, measured through the real limiter path (the exactness bound)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from devstack import ProcessGroup, StandaloneRedis, free_port
from devstack.limiter import start_limiter
from limiter_service.backends.attempts import script_arguments
from limiter_service.backends.connection import RedisAccess, StaticConnector
from limiter_service.backends.redis import RedisBackend
from limiter_service.decision import Algorithm, Hit, Policy, Reason, Verdict
from limiter_service.deny_cache import DenyCache
from limiter_service.limiter import Limiter, Request
from limiter_service.policies import PolicySet
from ratelimit_client import proto
from tests.integration.client import LimiterClient
from tests.integration.test_contract import clocked_source
from tests.unit.conftest import SECOND, FakeClock

pytestmark = pytest.mark.integration


def evalsha_calls(redis_server: StandaloneRedis) -> int:
    with redis_server.client() as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_flood_on_an_over_limit_key_costs_no_evalsha(
    redis_server: StandaloneRedis, processes: ProcessGroup, tmp_path: Path
) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text("policies:\n  default: {limit: 5, window: 1h}\n")
    env = {
        "REDIS_URL": redis_server.url,
        "LIMITER_POLICIES": str(path),
        "REDIS_TIMEOUT_MS": "3000",
        "LIMITER_DECISION_TIMEOUT_MS": "10000",
        # The health probe runs the script too; keep it out of the counts.
        "LIMITER_HEALTH_INTERVAL_MS": "60000",
    }
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    key = f"flood:{uuid.uuid4()}"
    try:
        for _ in range(3):
            assert (await client.should_allow(key, timeout=10)).allowed
        first = await client.should_allow(key, cost=3, timeout=10)  # 3 + 3 > 5
        assert first.reason == proto.Reason.REASON_OVER_LIMIT
        before = evalsha_calls(redis_server)
        flood = await asyncio.gather(
            *(client.should_allow(key, cost=3 + i % 3, timeout=10) for i in range(500))
        )
        assert {r.reason for r in flood} == {proto.Reason.REASON_OVER_LIMIT}
        assert all(r.retry_after.ToMicroseconds() > 0 for r in flood)
        assert evalsha_calls(redis_server) == before
        # A smaller cost may fit: it is still asked (and allowed).
        assert (await client.should_allow(key, cost=2, timeout=10)).allowed
        assert evalsha_calls(redis_server) == before + 1
        samples = node.metrics()
        assert samples.get("ratelimit_deny_cache_answers_total", policy="default") == 500
    finally:
        await client.close()


class ClockedRedis:
    """The real Lua scripts on the real Redis, with Redis ``TIME`` replaced by ``clock``
    plus ``delay_us``: the time a request sent at ``clock()`` reaches Redis."""

    description = "clocked redis"

    def __init__(self, client: aioredis.Redis, clock: FakeClock) -> None:
        self._client = client
        self._clock = clock
        self._source = clocked_source()
        self.delay_us = 0

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        now = self._clock() + self.delay_us
        verdicts = []
        for hit in hits:
            reply = await self._client.eval(self._source, *script_arguments([hit], [0]), now)
            verdicts.append(Verdict(bool(reply[0]), *reply[1:4]))
        return verdicts

    async def reset(self, storage_key: str, deadline: float) -> None:
        await self._client.delete(storage_key)

    async def refresh(self, deadline: float) -> None:
        return None

    async def close(self) -> None:
        return None


POLICIES = [
    Policy("fw", 7, 10 * SECOND, Algorithm.FIXED_WINDOW, 7, match="fw:"),
    Policy("sw", 7, 10 * SECOND, Algorithm.SLIDING_WINDOW, 7, match="sw:"),
    Policy("tb", 30, 10 * SECOND, Algorithm.TOKEN_BUCKET, 4, match="tb:"),
    Policy("swo", 13, 7 * SECOND + 1000, Algorithm.SLIDING_WINDOW, 13, match="swo:"),
    Policy(
        "ov", 7, 3 * SECOND + 1000, Algorithm.TOKEN_BUCKET, 7, "ov:", allow_request_override=True
    ),
    Policy("sh", 5, 10 * SECOND, Algorithm.FIXED_WINDOW, 5, "sh:", shadow=True),
]
# The modelled limiter -> Redis delay: well above what test_boundary_bound measures here.
MAX_DELAY_US = 2000


@pytest.mark.parametrize("seed", range(3))
async def test_differential_on_the_real_scripts(redis_server: StandaloneRedis, seed: int) -> None:
    """Before each request, Redis's answer to it at the time it would reach Redis (a dry
    run of the same hit on the same counter, which consumes nothing) is the truth; the
    limiter with the cache must give it, except for a cached denial with at most the
    modelled delay left."""
    rng = random.Random(seed)
    clock = FakeClock(1_763_700_000_000_000 + rng.randrange(10 * SECOND))
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    backend = ClockedRedis(client, clock)
    cache = DenyCache(16, clock)
    prefix = f"diff{seed}-{uuid.uuid4().hex[:8]}"
    limiter = Limiter(PolicySet(POLICIES), backend, key_prefix=prefix, deny_cache=cache)
    keys = [f"{p.match}{n}" for p in POLICIES for n in range(2)]
    served = boundary = 0
    try:
        for step in range(2500):
            clock.advance(rng.choice([0, 1, rng.randrange(5000), rng.randrange(SECOND)]))
            key = rng.choice(keys)
            fields: dict[str, object] = {"cost": rng.randint(1, 4)}
            if rng.random() < 0.1:
                fields["dry_run"] = True
            if key.startswith("ov:") and rng.random() < 0.3:
                fields["limit"] = 9
            request = Request(key, **fields)  # type: ignore[arg-type]
            hit = limiter.hit_for(request)
            backend.delay_us = rng.randrange(MAX_DELAY_US + 1)
            (truth,) = await backend.decide([hit._replace(dry_run=True)], 0.0)
            entry_until = cache.until_us(hit.storage_key)
            (got,) = await limiter.decide([request])
            from_cache = entry_until is not None and got.reason is Reason.OVER_LIMIT
            from_cache = from_cache and cache.until_us(hit.storage_key) == entry_until
            denied = got.reason in (Reason.OVER_LIMIT, Reason.SHADOW_OVER_LIMIT)
            if denied == (not truth.allowed):
                served += from_cache
                continue
            # The only disagreement allowed: a cached denial that Redis, reached later,
            # would no longer make, with at most the delay left on the entry.
            assert got.reason is Reason.OVER_LIMIT and truth.allowed, (step, got, truth)
            assert got.retry_after_us <= MAX_DELAY_US, (step, got, truth)
            boundary += 1
    finally:
        await client.aclose()
    assert served > 150
    print(f"seed {seed}: {served} answered from the cache, {boundary} within the delay")


async def test_boundary_bound(redis_server: StandaloneRedis) -> None:
    """Through the real limiter and Redis backend: a fixed window's ``T`` is the window's
    end on Redis's clock, so ``T - entry end`` is how long after the limiter took ``now``
    Redis computed ``T`` (limiter and Redis share this host's wall clock). That is the
    window in which a cached denial can be wrong."""
    policy = Policy("default", 1, 200_000, Algorithm.FIXED_WINDOW, 1)
    backend = RedisBackend(StaticConnector(redis_server.url, RedisAccess(), 2.0, 4), 2.0)
    cache = DenyCache(1000, lambda: time.time_ns() // 1000)
    limiter = Limiter(
        PolicySet([policy]), backend, deny_cache=cache, decision_timeout_s=5, max_in_flight=3
    )
    delays: list[int] = []
    try:
        for round_ in range(60):
            keys = [f"bound:{round_}:{i}:{uuid.uuid4().hex[:6]}" for i in range(8)]
            await limiter.decide([Request(k) for k in keys])
            # Concurrent denials, so some share a coalesced round trip.
            await asyncio.gather(*(limiter.decide([Request(k)]) for k in keys))
            for k in keys:
                until = cache.until_us(limiter.hit_for(Request(k)).storage_key)
                if until is None:
                    continue  # the window turned between the two calls
                window_end = until - until % policy.window_us + policy.window_us
                delays.append(window_end - until)
    finally:
        await limiter.close()
    delays.sort()
    p50, p99 = statistics.median(delays), delays[int(len(delays) * 0.99)]
    print(f"limiter now -> Redis T: p50 {p50} us, p99 {p99} us, max {delays[-1]} us")
    assert len(delays) > 300
    assert min(delays) >= 0  # the entry never outlives Redis's own T
    assert p99 < MAX_DELAY_US * 5
