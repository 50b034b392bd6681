"""All-or-nothing batches on every real backend: memory, one Redis, and a Redis Cluster of
three primaries (real processes on loopback), through the in-process ``Limiter``, and
through a limiter process over gRPC.

The same contract on each backend: a group consumes only if none of its enforced requests
is denied; a denied group leaves no trace in Redis; mixed algorithms and the same key twice
are decided together; shadow requests never block; dry runs never consume. Round trips are
proved with each node's own ``INFO commandstats``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from devstack import StandaloneRedis
from devstack.redis_cluster import RedisCluster, key_slot
from devstack.redis_probes import Address
from limiter_service.backends.base import Backend
from limiter_service.backends.cluster import ClusterBackend
from limiter_service.backends.connection import RedisAccess, StaticConnector
from limiter_service.backends.memory import MemoryBackend
from limiter_service.backends.redis import RedisBackend
from limiter_service.decision import Algorithm, Decision, Policy, Reason
from limiter_service.limiter import Limiter, Request
from limiter_service.policies import PolicySet
from ratelimit_client import proto
from tests.integration.client import LimiterClient
from tests.integration.conftest import LimiterOn
from tests.unit.conftest import SECOND

pytestmark = pytest.mark.integration

HOUR = 3600 * SECOND
POLICIES = [
    Policy("fw", 10, HOUR, Algorithm.FIXED_WINDOW, 10, match="fw:"),
    Policy("sw", 10, HOUR, Algorithm.SLIDING_WINDOW, 10, match="sw:"),
    Policy("tb", 10, HOUR, Algorithm.TOKEN_BUCKET, 10, match="tb:"),
    Policy("sh", 2, HOUR, Algorithm.FIXED_WINDOW, 2, match="sh:", shadow=True),
    Policy("free", 1, HOUR, Algorithm.FIXED_WINDOW, 1, match="free:", unlimited=True),
]


@dataclass
class Stack:
    """A limiter on one kind of backend, and what the test may read of the storage:
    ``client(storage_key)`` opens a client to the node holding the key (``None``: memory),
    ``calls()`` counts EVALSHA on each node."""

    kind: str
    limiter: Limiter
    client: Callable[[str], redis.Redis] | None = None
    calls: Callable[[], dict[Address, int]] = dict

    def stored(self, key: str) -> bool:
        """Whether the counter of ``key`` exists."""
        storage_key = self.limiter.counter_for(Request(key))[1]
        if self.client is None:
            backend = self.limiter.backend
            assert isinstance(backend, MemoryBackend)
            return storage_key in backend._entries
        with self.client(storage_key) as client:
            return bool(client.exists(storage_key))

    async def left(self, key: str) -> int:
        """Units available on ``key`` (a dry run of cost 1, plus that unit)."""
        (decision,) = await self.limiter.decide([Request(key, dry_run=True)])
        return decision.remaining + 1 if decision.allowed else decision.remaining

    async def group(self, *requests: Request) -> list[Decision]:
        return await self.limiter.decide(list(requests), all_or_nothing=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=1000) as c:
        yield c


def evalsha_calls(clients: dict[Address, Callable[[], redis.Redis]]) -> dict[Address, int]:
    calls = {}
    for address, connect in clients.items():
        with connect() as client:
            stats = client.info("commandstats")
        calls[address] = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return calls


def cluster_stack(cluster: RedisCluster, backend: ClusterBackend | None = None) -> Stack:
    seeds = [node.address for node in cluster.nodes]
    backend = backend or ClusterBackend(seeds, RedisAccess(password=cluster.password), 2.0, 4)

    def primaries() -> dict[Address, Callable[[], redis.Redis]]:
        return {
            address: functools.partial(cluster.client, address) for address in cluster.primaries()
        }

    return Stack(
        "cluster",
        Limiter(PolicySet(POLICIES), backend, decision_timeout_s=5.0),
        lambda key: cluster.client(cluster.owner_of(key)),
        lambda: evalsha_calls(primaries()),
    )


@pytest.fixture(params=["memory", "redis", "cluster"])
async def stack(
    request: pytest.FixtureRequest, redis_server: StandaloneRedis
) -> AsyncIterator[Stack]:
    backend: Backend
    if request.param == "memory":
        made = Stack(
            "memory", Limiter(PolicySet(POLICIES), MemoryBackend(), decision_timeout_s=5.0)
        )
    elif request.param == "redis":
        backend = RedisBackend(StaticConnector(redis_server.url, RedisAccess(), 2.0, 4), 2.0)
        made = Stack(
            "redis",
            Limiter(PolicySet(POLICIES), backend, decision_timeout_s=5.0),
            lambda key: redis_server.client(),
            lambda: evalsha_calls({("redis", 0): redis_server.client}),
        )
    else:
        made = cluster_stack(request.getfixturevalue("cluster"))
    yield made
    await made.limiter.close()


def fresh(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


async def test_a_group_of_mixed_algorithms_that_fits_consumes_every_item(stack: Stack) -> None:
    a, b, c = fresh("fw:"), fresh("sw:"), fresh("tb:")
    decisions = await stack.group(Request(a, cost=3), Request(b, cost=4), Request(c, cost=5))
    assert [(d.allowed, d.reason, d.remaining) for d in decisions] == [
        (True, Reason.WITHIN_LIMIT, 7),
        (True, Reason.WITHIN_LIMIT, 6),
        (True, Reason.WITHIN_LIMIT, 5),
    ]
    assert [await stack.left(k) for k in (a, b, c)] == [7, 6, 5]


@pytest.mark.parametrize("over", ["fw:", "sw:", "tb:"])
async def test_a_denied_group_consumes_nothing(stack: Stack, over: str) -> None:
    a, b, c, full = fresh("fw:"), fresh("sw:"), fresh("tb:"), fresh(over)
    await stack.limiter.decide([Request(full, cost=9)])
    decisions = await stack.group(
        Request(a, cost=3), Request(full, cost=2), Request(b, cost=4), Request(c, cost=5)
    )
    assert [(d.allowed, d.reason) for d in decisions] == [
        (False, Reason.NOT_ALL_ALLOWED),
        (False, Reason.OVER_LIMIT),
        (False, Reason.NOT_ALL_ALLOWED),
        (False, Reason.NOT_ALL_ALLOWED),
    ]
    assert [decisions[i].remaining for i in (0, 2, 3)] == [10, 10, 10]
    assert decisions[1].retry_after_us > 0
    assert {decisions[i].retry_after_us for i in (0, 2, 3)} == {decisions[1].retry_after_us}
    assert not any(stack.stored(k) for k in (a, b, c)), "a denied group writes nothing"
    assert [await stack.left(k) for k in (a, full, b, c)] == [10, 1, 10, 10]


async def test_the_same_key_twice_in_a_group(stack: Stack) -> None:
    k, other = fresh("sw:"), fresh("tb:")
    denied = await stack.group(Request(k, cost=6), Request(other), Request(k, cost=5))
    assert [d.reason for d in denied] == [
        Reason.NOT_ALL_ALLOWED,
        Reason.NOT_ALL_ALLOWED,
        Reason.OVER_LIMIT,
    ]
    assert (denied[0].remaining, denied[2].remaining) == (10, 4)
    assert not stack.stored(k) and not stack.stored(other)
    admitted = await stack.group(Request(k, cost=6), Request(other), Request(k, cost=4))
    assert [d.remaining for d in admitted] == [4, 9, 0]
    assert await stack.left(k) == 0


async def test_a_shadow_item_over_its_limit_does_not_block(stack: Stack) -> None:
    a, s = fresh("fw:"), fresh("sh:")
    await stack.limiter.decide([Request(s, cost=2)])
    decisions = await stack.group(Request(a, cost=2), Request(s), Request(fresh("free:")))
    assert [(d.allowed, d.reason) for d in decisions] == [
        (True, Reason.WITHIN_LIMIT),
        (True, Reason.SHADOW_OVER_LIMIT),
        (True, Reason.UNLIMITED),
    ]
    assert await stack.left(a) == 8


async def test_dry_runs_in_a_group_consume_nothing(stack: Stack) -> None:
    a, b = fresh("fw:"), fresh("tb:")
    decisions = await stack.group(Request(a, cost=2), Request(b, cost=7, dry_run=True))
    assert [(d.allowed, d.reason, d.remaining) for d in decisions] == [
        (True, Reason.WITHIN_LIMIT, 8),
        (True, Reason.WITHIN_LIMIT, 3),
    ]
    assert not stack.stored(b)
    assert (await stack.left(a), await stack.left(b)) == (8, 10)


async def test_a_mixed_group_is_one_evalsha_on_one_redis(stack: Stack) -> None:
    if stack.kind != "redis":
        pytest.skip("one Redis only; the cluster has its own count below")
    keys = [fresh(prefix) for prefix in ("fw:", "sw:", "tb:", "fw:", "sw:", "tb:")]
    await stack.left(keys[0])  # the script is loaded
    before = stack.calls()
    admitted = await stack.group(*(Request(k) for k in keys))
    after_admitted = stack.calls()
    await stack.limiter.decide([Request(keys[1], cost=9)])
    middle = stack.calls()
    denied = await stack.group(*(Request(k) for k in keys))
    after_denied = stack.calls()
    assert all(d.allowed for d in admitted)
    assert [d.reason for d in denied].count(Reason.OVER_LIMIT) == 1
    assert sum(after_admitted.values()) - sum(before.values()) == 1
    assert sum(after_denied.values()) - sum(middle.values()) == 1


def keys_on_every_primary(cluster: RedisCluster, limiter: Limiter, prefix: str) -> list[str]:
    """One key per primary (in ``cluster.primaries()`` order), its counter served there."""
    owners = cluster.slot_owners()
    chosen: dict[Address, str] = {}
    for n in itertools.count():
        key = f"{prefix}{uuid.uuid4().hex[:8]}{n}"
        chosen.setdefault(owners[key_slot(limiter.counter_for(Request(key))[1])], key)
        if len(chosen) == 3:
            return [chosen[address] for address in cluster.primaries()]
    raise AssertionError("unreachable")


def delta(after: dict[Address, int], before: dict[Address, int]) -> dict[Address, int]:
    return {address: after[address] - before.get(address, 0) for address in after}


async def test_a_group_spanning_cluster_primaries(cluster: RedisCluster) -> None:
    stack = cluster_stack(cluster)
    try:
        fw, sw, tb = (
            keys_on_every_primary(cluster, stack.limiter, prefix)
            for prefix in ("fw:", "sw:", "tb:")
        )
        await stack.left(fw[0])  # reads the slot map, loads the script
        requests = [Request(fw[0], cost=4), Request(sw[1], cost=4), Request(tb[2], cost=4)]

        before = stack.calls()
        admitted = await stack.group(*requests)
        admitted_calls = delta(stack.calls(), before)
        assert [d.reason for d in admitted] == [Reason.WITHIN_LIMIT] * 3
        assert [await stack.left(k) for k in (fw[0], sw[1], tb[2])] == [6, 6, 6]
        # A probe round, then the consuming round: two EVALSHA on each primary.
        assert admitted_calls == dict.fromkeys(cluster.primaries(), 2), admitted_calls

        await stack.limiter.decide([Request(tb[2], cost=5)])
        before = stack.calls()
        denied = await stack.group(*requests)
        denied_calls = delta(stack.calls(), before)
        assert [d.reason for d in denied] == [
            Reason.NOT_ALL_ALLOWED,
            Reason.NOT_ALL_ALLOWED,
            Reason.OVER_LIMIT,
        ]
        assert [await stack.left(k) for k in (fw[0], sw[1], tb[2])] == [6, 6, 1]
        # Denied by the probe: one EVALSHA per primary, nothing written anywhere.
        assert denied_calls == dict.fromkeys(cluster.primaries(), 1), denied_calls

        # A group within one slot (the same key twice) is one EVALSHA, on its primary.
        before = stack.calls()
        same = await stack.group(Request(fw[1], cost=3), Request(fw[1], cost=3))
        assert [d.remaining for d in same] == [7, 4]
        assert sum(delta(stack.calls(), before).values()) == 1
    finally:
        await stack.limiter.close()


class RacingCluster(ClusterBackend):
    """A cluster backend that lets ``race`` run between a group's probe and its second
    round, as another limiter's traffic could."""

    race: Callable[[], None] = staticmethod(lambda: None)

    async def _between_rounds(self) -> None:
        await asyncio.to_thread(self.race)


async def test_the_residual_of_a_race_between_the_two_rounds(cluster: RedisCluster) -> None:
    """Documented in the README: a slot denying in the second round after another slot
    consumed. The group is answered denied; the parts consumed stay consumed."""
    seeds = [node.address for node in cluster.nodes]
    backend = RacingCluster(seeds, RedisAccess(password=cluster.password), 2.0, 4)
    stack = cluster_stack(cluster, backend)
    try:
        first, raced, _ = keys_on_every_primary(cluster, stack.limiter, "fw:")
        raced_key = stack.limiter.counter_for(Request(raced))[1]

        def spend_raced() -> None:
            with cluster.client(cluster.owner_of(raced_key)) as client:
                client.hset(raced_key, mapping={"n": 10})

        await stack.limiter.decide([Request(raced, dry_run=True)])
        window_start = await asyncio.to_thread(_window_start, cluster, raced_key)
        await asyncio.to_thread(_seed, cluster, raced_key, window_start)
        backend.race = spend_raced
        decisions = await stack.group(Request(first, cost=3), Request(raced, cost=3))
        assert [(d.allowed, d.reason) for d in decisions] == [
            (False, Reason.NOT_ALL_ALLOWED),
            (False, Reason.OVER_LIMIT),
        ]
        backend.race = lambda: None
        # The residual: the first primary's part was consumed (and says so).
        assert decisions[0].remaining == 7
        assert await stack.left(first) == 7
    finally:
        await stack.limiter.close()


def _window_start(cluster: RedisCluster, key: str) -> int:
    with cluster.client(cluster.owner_of(key)) as client:
        seconds, micros = client.time()
    now = int(seconds) * SECOND + int(micros)
    return now - now % HOUR


def _seed(cluster: RedisCluster, key: str, start: int) -> None:
    """A fixed-window counter at 0 in the current window, kept an hour."""
    with cluster.client(cluster.owner_of(key)) as client:
        client.hset(key, mapping={"s": start, "n": 0})
        client.pexpire(key, HOUR // 1000)


GRPC_POLICIES = """
policies:
  fw: {limit: 5, window: 1h, match: "fw:"}
  tb: {limit: 5, window: 1h, algorithm: token_bucket, match: "tb:"}
  shadowed: {limit: 1, window: 1h, shadow: true, match: "sh:"}
  default: {limit: 10, window: 1h}
"""


@pytest.fixture(params=["memory", "redis"])
async def grpc_client(request: pytest.FixtureRequest, limiter_on: LimiterOn) -> LimiterClient:
    return limiter_on(request.param, GRPC_POLICIES)


async def test_should_allow_batch_all_or_nothing(grpc_client: LimiterClient) -> None:
    R = proto.Reason
    a, b = fresh("fw:"), fresh("tb:")
    group = [
        proto.ShouldAllowRequest(key=a, cost=2),
        proto.ShouldAllowRequest(key=b, cost=4),
        proto.ShouldAllowRequest(key=b, cost=2),
    ]
    denied = await grpc_client.batch(group, all_or_nothing=True)
    assert [(r.allowed, r.reason) for r in denied] == [
        (False, R.REASON_NOT_ALL_ALLOWED),
        (False, R.REASON_NOT_ALL_ALLOWED),
        (False, R.REASON_OVER_LIMIT),
    ]
    assert [r.remaining for r in denied[:2]] == [5, 5]
    assert denied[0].retry_after.ToMicroseconds() == denied[2].retry_after.ToMicroseconds() > 0
    assert (await grpc_client.should_allow(a, dry_run=True)).remaining == 4  # nothing spent
    # Without the flag the same batch is decided item by item.
    independent = await grpc_client.batch(group)
    assert [r.reason for r in independent] == [
        R.REASON_WITHIN_LIMIT,
        R.REASON_WITHIN_LIMIT,
        R.REASON_OVER_LIMIT,
    ]
    # A shadow policy over its limit does not block; the rest is consumed.
    c, s = fresh("fw:"), fresh("sh:")
    await grpc_client.should_allow(s)
    admitted = await grpc_client.batch(
        [proto.ShouldAllowRequest(key=c), proto.ShouldAllowRequest(key=s)], all_or_nothing=True
    )
    assert [(r.allowed, r.reason) for r in admitted] == [
        (True, R.REASON_WITHIN_LIMIT),
        (True, R.REASON_SHADOW_OVER_LIMIT),
    ]
    assert admitted[0].remaining == 4


async def test_a_group_survives_an_empty_script_cache(stack: Stack) -> None:
    if stack.kind == "memory":
        pytest.skip("no script cache")
    a, b, full = fresh("fw:"), fresh("tb:"), fresh("sw:")
    await stack.limiter.decide([Request(full, cost=10)])
    keys = [stack.limiter.counter_for(Request(k))[1] for k in (a, b, full)]
    for storage_key in keys:
        with stack.client(storage_key) as client:  # type: ignore[misc]
            client.script_flush()
    denied = await stack.group(Request(a), Request(b), Request(full))
    assert [d.reason for d in denied] == [
        Reason.NOT_ALL_ALLOWED,
        Reason.NOT_ALL_ALLOWED,
        Reason.OVER_LIMIT,
    ]
    for storage_key in keys:
        with stack.client(storage_key) as client:  # type: ignore[misc]
            client.script_flush()
    admitted = await stack.group(Request(a), Request(b))
    assert [d.reason for d in admitted] == [Reason.WITHIN_LIMIT] * 2
    assert (await stack.left(a), await stack.left(b)) == (9, 9)
