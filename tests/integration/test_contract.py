"""Contract: every algorithm gives the same verdicts on Redis (Lua) as in memory (Python).

Two levels:
- the Lua script with Redis ``TIME`` swapped for a clock the test sets, so whole random
  sequences (window changes, denials, dry runs, costs, all-or-nothing groups mixing
  algorithms) must match to the microsecond;
- the real scripts through the real Redis backend, where Redis's own clock runs: decisions
  and ``remaining`` must match exactly, durations within the time the sequence took.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from devstack import StandaloneRedis
from limiter_service.backends.attempts import script_arguments
from limiter_service.backends.connection import RedisAccess, StaticConnector
from limiter_service.backends.memory import MemoryBackend
from limiter_service.backends.redis import RedisBackend
from limiter_service.backends.scripts import RESULT_WIDTH, load_script
from limiter_service.decision import Algorithm, Hit, Policy, Verdict
from limiter_service.groups import settle
from tests.unit.conftest import SECOND, FakeClock

pytestmark = pytest.mark.integration

TIME_LINES = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
POLICIES = [
    Policy("fw", 7, 10 * SECOND, Algorithm.FIXED_WINDOW, 7),
    Policy("sw", 7, 10 * SECOND, Algorithm.SLIDING_WINDOW, 7),
    Policy("tb", 7, 10 * SECOND, Algorithm.TOKEN_BUCKET, 7),
    Policy("tb-burst", 30, 10 * SECOND, Algorithm.TOKEN_BUCKET, 4),
    Policy("fw-odd", 13, 7 * SECOND + 1000, Algorithm.FIXED_WINDOW, 13),
    Policy("sw-odd", 13, 7 * SECOND + 1000, Algorithm.SLIDING_WINDOW, 13),
    Policy("tb-odd", 7, 3 * SECOND + 1000, Algorithm.TOKEN_BUCKET, 7),
]


def clocked_source() -> str:
    source = load_script().source
    assert TIME_LINES in source, "the script no longer reads TIME the way this test expects"
    return source.replace(TIME_LINES, "local now = tonumber(ARGV[#ARGV])\n")


def run_clocked(client: Any, source: str, hits: list[Hit], now: int) -> list[Verdict]:
    """The script's verdicts for ``hits`` at ``now``, settled as the backends settle them."""
    reply = client.eval(source, *script_arguments(hits, range(len(hits))), now)
    assert isinstance(reply, list) and len(reply) == len(hits) * RESULT_WIDTH
    verdicts = [
        Verdict(bool(reply[i]), *reply[i + 1 : i + RESULT_WIDTH])
        for i in range(0, len(reply), RESULT_WIDTH)
    ]
    return settle(hits, verdicts)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
async def test_lua_matches_python_on_random_sequences(
    redis_server: StandaloneRedis, policy: Policy
) -> None:
    rng = random.Random(f"contract-{policy.name}")
    source = clocked_source()
    clock = FakeClock(1_763_700_000_000_000 + rng.randrange(policy.window_us))
    memory = MemoryBackend(clock)
    key = f"contract:{policy.name}:{rng.random()}"
    with redis_server.client() as client:
        for step in range(400):
            clock.advance(rng.choice([0, 0, 1, rng.randrange(policy.window_us // 3)]))
            cost = rng.choice([1, 1, 1, rng.randint(1, policy.capacity)])
            dry = rng.random() < 0.1
            if dry and rng.random() < 0.3:
                cost = 0  # an Envoy descriptor's hits_addend 0: a check adding nothing
            hit = Hit(key, policy, cost, dry)
            (expected,) = await memory.decide([hit], 0.0)
            (got,) = run_clocked(client, source, [hit], clock.now)
            assert got == expected, f"step {step}: cost={cost} dry={dry}"
            ttl_ms = client.pttl(key)
            assert ttl_ms != -1, "every key written must carry a TTL"


async def test_batch_script_decides_items_in_order(redis_server: StandaloneRedis) -> None:
    policy = POLICIES[0]
    source = clocked_source()
    clock = FakeClock(1_763_700_000_000_000)
    keys = ["batch:a", "batch:b", "batch:a", "batch:a"]
    costs = [5, 7, 2, 1]
    hits = [Hit(k, policy, c, False) for k, c in zip(keys, costs, strict=True)]
    memory = MemoryBackend(clock)
    expected = await memory.decide(hits, 0.0)
    with redis_server.client() as client:
        client.delete(*set(keys))
        got = run_clocked(client, source, hits, clock.now)
    assert got == expected
    assert [v.allowed for v in got] == [True, True, True, False]


SHADOW = Policy("shadow", 5, 10 * SECOND, Algorithm.FIXED_WINDOW, 5, shadow=True)


@pytest.mark.parametrize("seed", range(4))
async def test_all_or_nothing_groups_match_python_on_random_sequences(
    redis_server: StandaloneRedis, seed: int
) -> None:
    """Calls of several groups (and lone hits), mixing algorithms, the same counter more
    than once, dry runs and shadow policies: Lua and Python agree to the microsecond, and
    every key written carries a TTL."""
    rng = random.Random(f"groups-{seed}")
    source = clocked_source()
    clock = FakeClock(1_763_700_000_000_000 + rng.randrange(10 * SECOND))
    memory = MemoryBackend(clock)
    run = rng.random()
    counters = [
        (f"groups:{run}:{policy.name}:{i}", policy)
        for policy in [*POLICIES, SHADOW]
        for i in (0, 1)
    ]
    group_ids = iter(range(1, 1_000_000))
    blocked = admitted = 0
    with redis_server.client() as client:
        for step in range(150):
            clock.advance(rng.choice([0, 1, rng.randrange(2 * SECOND)]))
            hits: list[Hit] = []
            for _ in range(rng.randint(1, 3)):
                group = next(group_ids) if rng.random() < 0.8 else 0
                for _ in range(rng.randint(1, 5) if group else 1):
                    key, policy = rng.choice(counters)
                    cost = rng.choice([1, 1, rng.randint(1, policy.capacity)])
                    hits.append(Hit(key, policy, cost, rng.random() < 0.1, group))
            expected = await memory.decide(hits, 0.0)
            got = run_clocked(client, source, hits, clock.now)
            assert got == expected, f"step {step}"
            held = {hit.group for hit, verdict in zip(hits, got, strict=True) if verdict.held}
            blocked += len(held)
            admitted += len({hit.group for hit in hits if hit.group} - held)
            for key, _ in counters:
                assert client.pttl(key) != -1, "every key written must carry a TTL"
    assert blocked > 10 and admitted > 10, (blocked, admitted)


async def test_a_probe_decides_like_the_real_run_and_writes_nothing(
    redis_server: StandaloneRedis,
) -> None:
    source = clocked_source()
    clock = FakeClock(1_763_700_000_000_000)
    run = random.random()
    hits = [Hit(f"probe:{run}:{policy.name}", policy, 2, False, 9) for policy in POLICIES[:3]] * 2
    arguments = script_arguments(hits, range(len(hits)), probing={9})
    with redis_server.client() as client:
        probed = client.eval(source, *arguments, clock.now)
        assert not any(client.exists(hit.storage_key) for hit in hits)
        real = client.eval(source, *script_arguments(hits, range(len(hits))), clock.now)
        assert all(client.exists(hit.storage_key) for hit in hits)
    assert probed == real


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_real_scripts_match_memory_within_a_window(
    redis_server: StandaloneRedis, algorithm: Algorithm
) -> None:
    policy = Policy(f"live-{algorithm.value}", 20, 3600 * SECOND, algorithm, 20)
    backend = RedisBackend(StaticConnector(redis_server.url, RedisAccess(), 2.0, 4), 2.0)
    with redis_server.client() as client:
        for _attempt in range(3):
            key = f"live:{algorithm.value}:{random.random()}"
            start_s, start_us = client.time()
            clock = FakeClock(start_s * SECOND + start_us)
            memory = MemoryBackend(clock)
            rng = random.Random(algorithm.value)
            pairs: list[tuple[Verdict, Verdict]] = []
            for _ in range(40):
                hit = Hit(key, policy, rng.randint(1, 3), rng.random() < 0.1)
                deadline = asyncio.get_running_loop().time() + 5
                (live,) = await backend.decide([hit], deadline)
                (reference,) = await memory.decide([hit], 0.0)
                pairs.append((live, reference))
            end_s, end_us = client.time()
            elapsed = end_s * SECOND + end_us - clock.now
            window_start = clock.now - clock.now % policy.window_us
            if end_s * SECOND + end_us < window_start + policy.window_us:
                break  # the sequence stayed inside one window: compare it
        else:
            pytest.fail("could not run the sequence inside one window")
    await backend.close()
    for live, reference in pairs:
        assert (live.allowed, live.remaining) == (reference.allowed, reference.remaining)
        for got, want in [
            (live.reset_after_us, reference.reset_after_us),
            (live.retry_after_us, reference.retry_after_us),
        ]:
            assert want - elapsed <= got <= want
    assert any(not live.allowed for live, _ in pairs)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
async def test_a_cost_above_the_capacity_matches_python(
    redis_server: StandaloneRedis, policy: Policy
) -> None:
    """A cost the policy can never grant, on an empty counter, on one with a count in this
    window and on one with a count only in the previous window: Lua and Python agree, and
    the waits are finite and positive (a sliding window once divided by an empty window)."""
    source = clocked_source()
    clock = FakeClock(1_763_700_000_000_000 + policy.window_us // 3)
    memory = MemoryBackend(clock)
    key = f"contract:over:{policy.name}:{random.random()}"
    over, far_over = policy.capacity + 1, policy.capacity + 5
    steps = [(0, over), (0, 2), (0, over), (0, far_over), (policy.window_us, over)]
    steps += [(1, far_over), (policy.window_us, over)]
    with redis_server.client() as client:
        for step, (advance, cost) in enumerate(steps):
            clock.advance(advance)
            hit = Hit(key, policy, cost, False)
            (expected,) = await memory.decide([hit], 0.0)
            (got,) = run_clocked(client, source, [hit], clock.now)
            assert got == expected, f"step {step}: cost={cost}"
            if cost > policy.capacity:
                assert not got.allowed
                assert 0 < got.retry_after_us < 100 * policy.window_us, f"step {step}"
