"""Redis Cluster: a real cluster of three primaries and three replicas on loopback.

- contract: batches over keys spread across slots decide exactly like the memory backend
  and like one Redis;
- one round trip per primary, proved by each node's own ``INFO commandstats``;
- exactness through a limiter process with ``LIMITER_BACKEND=cluster``;
- MOVED after resharding a slot, ASK during a migration;
- SIGKILL of a primary under load: no RPC errors, the failure mode covers the gap,
  authoritative again after the replica's promotion, counters kept.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack import ProcessGroup, StandaloneRedis, free_port
from devstack.limiter import start_limiter
from devstack.redis_cluster import RedisCluster, key_slot
from devstack.redis_probes import Address
from limiter_service.backends.cluster import ClusterBackend
from limiter_service.backends.connection import RedisAccess, StaticConnector
from limiter_service.backends.memory import MemoryBackend
from limiter_service.backends.redis import RedisBackend
from limiter_service.decision import Algorithm, Hit, Policy, Verdict
from ratelimit_client import proto
from tests.integration.client import LimiterClient
from tests.integration.test_exactness import hammer
from tests.integration.test_failover import AUTHORITATIVE, FAIL_MODE, Load, exhaust
from tests.unit.conftest import SECOND, FakeClock

pytestmark = pytest.mark.integration

NODE_TIMEOUT_MS = 1000
HOUR = 3600 * SECOND


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=NODE_TIMEOUT_MS) as c:
        yield c


@pytest.fixture
async def backend(cluster: RedisCluster) -> AsyncIterator[ClusterBackend]:
    seeds = [node.address for node in cluster.nodes]
    running = ClusterBackend(seeds, RedisAccess(password=cluster.password), 2.0, 4)
    yield running
    await running.close()


def deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def storage_key(policy: str, key: str) -> str:
    return f"rl:{{{policy}:{key}}}:t"


def keys_by_primary(cluster: RedisCluster, policy: str, per_primary: int) -> list[str]:
    """``per_primary`` keys for each primary, all of one primary's keys in one slot."""
    owners = cluster.slot_owners()
    slot_of: dict[Address, int] = {}
    found: dict[int, list[str]] = collections.defaultdict(list)
    for n in itertools.count():
        key = f"k{n}"
        slot = key_slot(storage_key(policy, key))
        chosen = slot_of.setdefault(owners[slot], slot)
        if chosen == slot and len(found[slot]) < per_primary:
            found[slot].append(key)
        if len(found) == 3 and all(len(keys) == per_primary for keys in found.values()):
            return [key for keys in found.values() for key in keys]
    raise AssertionError("unreachable")


def evalsha_calls(cluster: RedisCluster) -> dict[Address, int]:
    calls = {}
    for address in cluster.primaries():
        with cluster.client(address) as client:
            stats = client.info("commandstats")
        calls[address] = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return calls


def reset_stats(cluster: RedisCluster) -> None:
    for address in cluster.primaries():
        with cluster.client(address) as client:
            client.config_resetstat()


def in_one_window(start_us: int, end_us: int, window_us: int) -> bool:
    return start_us // window_us == end_us // window_us


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_batches_across_slots_decide_like_memory_and_one_redis(
    cluster: RedisCluster,
    backend: ClusterBackend,
    redis_server: StandaloneRedis,
    algorithm: Algorithm,
) -> None:
    policy = Policy(f"contract-{algorithm.value}", 20, HOUR, algorithm, 20)
    single = RedisBackend(StaticConnector(redis_server.url, RedisAccess(), 2.0, 4), 2.0)
    rng = random.Random(algorithm.value)
    primary = cluster.primaries()[0]
    try:
        for _attempt in range(3):
            run = uuid.uuid4().hex
            keys = [storage_key(policy.name, f"{run}:{i}") for i in range(60)]
            batches = [
                [
                    Hit(rng.choice(keys), policy, rng.randint(1, 3), rng.random() < 0.1)
                    for _ in range(300)
                ]
                for _ in range(3)
            ]
            with cluster.client(primary) as client:
                start_s, start_us = client.time()
                clock = FakeClock(start_s * SECOND + start_us)
                memory = MemoryBackend(clock)
                got: list[Verdict] = []
                alone: list[Verdict] = []
                want: list[Verdict] = []
                for batch in batches:
                    got += await backend.decide(batch, deadline())
                    alone += await single.decide(batch, deadline())
                    want += await memory.decide(batch, 0.0)
                end_s, end_us = client.time()
            elapsed = end_s * SECOND + end_us - clock.now
            if in_one_window(clock.now, clock.now + elapsed, policy.window_us):
                break
        else:
            pytest.fail("could not run the batches inside one window")
    finally:
        await single.close()
    slots = {key_slot(key) for key in keys}
    assert len(slots) > 40, "the keys must spread over many slots"
    assert len({cluster.owner_of(key) for key in keys}) == 3, "and over every primary"
    assert [(v.allowed, v.remaining) for v in got] == [(v.allowed, v.remaining) for v in want]
    assert [(v.allowed, v.remaining) for v in got] == [(v.allowed, v.remaining) for v in alone]
    for live, reference in zip(got, want, strict=True):
        assert reference.reset_after_us - elapsed <= live.reset_after_us <= reference.reset_after_us
        assert reference.retry_after_us - elapsed <= live.retry_after_us
        assert live.retry_after_us <= reference.retry_after_us
    assert any(not v.allowed for v in got) and any(v.allowed for v in got)


async def test_a_batch_costs_one_round_trip_per_primary(
    cluster: RedisCluster, backend: ClusterBackend
) -> None:
    policy = Policy(f"trips-{uuid.uuid4().hex[:8]}", 5, HOUR, Algorithm.SLIDING_WINDOW, 5)
    keys = keys_by_primary(cluster, policy.name, per_primary=10)
    hits = [Hit(storage_key(policy.name, key), policy, 1, False) for key in keys * 7]
    await backend.decide(hits[:1], deadline())  # reads the map and loads the scripts
    reset_stats(cluster)
    verdicts = await backend.decide(hits, deadline())
    calls = evalsha_calls(cluster)
    # 30 keys, 7 hits each (the first one already spent one unit): 5 allowed per key.
    assert sum(v.allowed for v in verdicts) == 30 * 5 - 1
    assert calls == dict.fromkeys(cluster.primaries(), 1), calls

    # Keys spread at random: one EVALSHA per slot (a script's keys must share one), all of
    # a primary's in one pipeline, i.e. one round trip per primary.
    spread = [Hit(storage_key(policy.name, f"r{i}"), policy, 1, False) for i in range(200)]
    reset_stats(cluster)
    await backend.decide(spread, deadline())
    slots_per_primary = collections.Counter(cluster.owner_of(hit.storage_key) for hit in spread)
    assert evalsha_calls(cluster) == dict(slots_per_primary)


async def test_a_resharded_slot_is_followed_through_moved(
    cluster: RedisCluster, backend: ClusterBackend
) -> None:
    policy = Policy("moved", 3, HOUR, Algorithm.TOKEN_BUCKET, 3)
    key = storage_key(policy.name, uuid.uuid4().hex)
    hit = Hit(key, policy, 1, False)
    for _ in range(3):
        (verdict,) = await backend.decide([hit], deadline())
        assert verdict.allowed
    slot = key_slot(key)
    old = cluster.owner_of(key)
    target = next(address for address in cluster.primaries() if address != old)
    await asyncio.to_thread(cluster.move_slot, slot, target)
    reset_stats(cluster)
    (after,) = await backend.decide([hit], deadline())  # the backend's map is stale
    assert not after.allowed, "the counter moved with its slot"
    assert evalsha_calls(cluster)[target] == 1
    assert backend.master_changes == 0
    await asyncio.to_thread(cluster.move_slot, slot, old)


async def test_a_migrating_slot_is_followed_through_ask(
    cluster: RedisCluster, backend: ClusterBackend
) -> None:
    policy = Policy("ask", 3, HOUR, Algorithm.FIXED_WINDOW, 3)
    await backend.decide([Hit(storage_key("ask", "warm"), policy, 1, True)], deadline())
    while True:  # a key in a slot holding no key yet: the source answers ASK for it
        key = storage_key(policy.name, uuid.uuid4().hex)
        slot, source = key_slot(key), cluster.owner_of(key)
        with cluster.client(source) as src:
            if src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0:
                break
    hit = Hit(key, policy, 1, False)
    target = next(address for address in cluster.primaries() if address != source)
    with cluster.client(source) as src, cluster.client(target) as dst:
        assert src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        source_id = src.execute_command("CLUSTER", "MYID")
        target_id = dst.execute_command("CLUSTER", "MYID")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        try:
            verdicts = [(await backend.decide([hit], deadline()))[0] for _ in range(4)]
            # The new key went to the importing node (behind ASKING), and stayed there.
            assert dst.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
            assert src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        finally:
            await asyncio.to_thread(cluster.move_slot, slot, target)
    assert [v.allowed for v in verdicts] == [True, True, True, False]


def limiter_env(cluster: RedisCluster, tmp_path: Path, policies: str) -> dict[str, str]:
    path = tmp_path / "policies.yaml"
    path.write_text(policies)
    return {
        "LIMITER_BACKEND": "cluster",
        "REDIS_CLUSTER_NODES": cluster.nodes_env(),
        "REDIS_PASSWORD": cluster.password,
        "LIMITER_POLICIES": str(path),
    }


EXACT_POLICIES = """
policies:
  fw: {limit: 100, window: 1h, algorithm: fixed_window, match: "fw:"}
  sw: {limit: 100, window: 1h, algorithm: sliding_window, match: "sw:"}
  tb: {limit: 100, window: 1h, algorithm: token_bucket, match: "tb:"}
"""


async def test_exactly_100_of_1000_through_a_cluster_limiter(
    cluster: RedisCluster, processes: ProcessGroup, tmp_path: Path
) -> None:
    env = limiter_env(cluster, tmp_path, EXACT_POLICIES)
    env |= {"REDIS_TIMEOUT_MS": "3000", "LIMITER_DECISION_TIMEOUT_MS": "20000"}
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    try:
        for algorithm in ("fw", "sw", "tb"):
            reasons = await hammer([client], f"{algorithm}:{uuid.uuid4()}")
            assert reasons == {
                proto.Reason.REASON_WITHIN_LIMIT: 100,
                proto.Reason.REASON_OVER_LIMIT: 900,
            }, algorithm
    finally:
        await client.close()


FAILOVER_POLICIES = """
policies:
  exhausted: {limit: 10, window: 1h, algorithm: token_bucket, match: "exhausted:"}
  default: {limit: 10, window: 60s}
"""


async def test_primary_sigkill_under_load(processes: ProcessGroup, tmp_path: Path) -> None:
    with RedisCluster(tmp_path / "cluster", node_timeout_ms=NODE_TIMEOUT_MS) as own:
        env = limiter_env(own, tmp_path, FAILOVER_POLICIES)
        # The deny cache off: the test watches the failure mode cover the lost slots.
        env |= {
            "REDIS_TIMEOUT_MS": "100",
            "LIMITER_DECISION_TIMEOUT_MS": "250",
            "LIMITER_DENY_CACHE_SIZE": "0",
        }
        node = start_limiter(processes, "limiter", free_port(), env)
        client = LimiterClient(node.address)
        exhausted = f"exhausted:{uuid.uuid4()}"
        await exhaust(client, exhausted)
        victim = own.owner_of(f"{{exhausted:{exhausted}}}")
        with own.client(victim) as primary:
            # A write in the same slot on this connection, then WAIT: the replica holds
            # everything the primary accepted before it.
            primary.set(f"{{exhausted:{exhausted}}}:barrier", 1, px=60_000)
            assert primary.wait(1, 5000) == 1
        load = Load(client)
        tasks = load.start()
        await load.run_for(1.0)
        killed_at = time.monotonic()
        await asyncio.to_thread(own.kill_primary, victim)
        new = await asyncio.to_thread(own.wait_for_promotion, victim, 30)
        promoted_at = time.monotonic()
        await load.run_for(2.0)
        load.stopping.set()
        await asyncio.gather(*tasks)
        after = await client.should_allow(exhausted)
        await client.close()

    assert load.errors == []
    fallbacks = [t for t, reason in load.answers if reason in FAIL_MODE]
    assert fallbacks, "the primary's slots were unserved for a second: the failure mode answers"
    resumed = [t for t, reason in load.answers if reason in AUTHORITATIVE and t > fallbacks[-1]]
    assert resumed, "authoritative decisions never resumed"
    gap = fallbacks[-1] - killed_at
    assert gap <= NODE_TIMEOUT_MS / 1000 + 5.0, f"failure mode answered until {gap:.2f}s"
    during = [r for t, r in load.answers if killed_at < t <= fallbacks[-1]]
    assert any(r in AUTHORITATIVE for r in during), "the other primaries kept deciding"
    statuses = [s for t, s in load.health if t > promoted_at]
    assert statuses and statuses[-1] == 1  # SERVING
    assert after.reason == proto.Reason.REASON_OVER_LIMIT, "the promoted replica kept the count"
    assert new != victim
    print(
        f"\ncluster failover: {len(fallbacks)} fail-mode answers of {len(load.answers)}; "
        f"last fail-mode answer {gap:.2f}s after SIGKILL; promotion seen by every node "
        f"after {promoted_at - killed_at:.2f}s"
    )
