"""Split brain, bounded: a partition isolates the master and one limiter from the sentinels.

Every process has its own loopback address: master 127.0.0.11, replicas .12 and .13,
sentinels .21-.23, limiter A .31 and limiter B .32 (each limiter binds its Redis
connections to its own address, ``REDIS_SOURCE_ADDRESS``). The partition cuts the master off
from the sentinels and the replicas, and limiter A off from the sentinels but not from the
old master. Sentinel promotes a replica; limiter B follows it. Limiter A must stop writing
within its master lease and report NOT_SERVING; the old master refuses writes once its
replicas are gone for ``min-replicas-max-lag``. The test measures how much a limit-100 key
over-admits in each failure mode (printed, and documented in the README).
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from devstack import ProcessGroup, RedisTopology, free_port, wait_until
from devstack.limiter import LimiterNode, start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient
from tests.integration.partition import Partition, iptables_usable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(iptables_usable() is not None, reason=str(iptables_usable())),
]

MASTER, REPLICAS, SENTINELS = (
    "127.0.0.11",
    ("127.0.0.12", "127.0.0.13"),
    (
        "127.0.0.21",
        "127.0.0.22",
        "127.0.0.23",
    ),
)
LIMITER_A, LIMITER_B = "127.0.0.31", "127.0.0.32"
LEASE_S = 2.0  # the default: twice the 1 s health interval
LIMIT = 100
RATE_PER_LIMITER = 25.0  # requests/s on the one key, from each limiter
PARTITION_S = 6.0
POLICIES = f"policies:\n  default: {{limit: {LIMIT}, window: 24h, algorithm: token_bucket}}\n"
AUTHORITATIVE = {proto.Reason.REASON_WITHIN_LIMIT, proto.Reason.REASON_OVER_LIMIT}
# The limiters cut off from the sentinels alone: a longer lease than the default, so that it
# surely holds for a while after the cut whenever the last confirmation came (at most a
# health interval before it), and a decision timeout far above a busy machine's
# scheduling delays (the default 100 ms is not, on a loaded 2-core machine).
HEALTH_INTERVAL_S = 1.0  # the default
CUT_LEASE_S = 4.0
CUT_DECISION_TIMEOUT_S = 1.0


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[RedisTopology]:
    hosts = (MASTER, *REPLICAS, *SENTINELS)
    with RedisTopology(tmp_path / "topology", down_after_ms=1000, hosts=hosts) as running:
        yield running


def start(
    processes: ProcessGroup,
    topology: RedisTopology,
    tmp_path: Path,
    host: str,
    mode: str,
    settings: dict[str, str] | None = None,
) -> LimiterNode:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    env = {
        "LIMITER_POLICIES": str(policies),
        "SENTINEL_HOSTS": topology.sentinel_hosts_env(),
        "REDIS_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password,
        "REDIS_SOURCE_ADDRESS": host,
        "LIMITER_FAILURE_MODE": mode,
        **(settings or {}),
    }
    return start_limiter(processes, f"limiter-{host}", free_port(host), env, host=host)


async def paced(
    client: LimiterClient, key: str, until: float
) -> list[tuple[float, float, int, bool]]:
    """Up to ``RATE_PER_LIMITER`` requests/s on ``key``, one at a time, sending none after
    ``until``: (sent, answered, reason, allowed) each, on ``time.monotonic()``."""
    answers: list[tuple[float, float, int, bool]] = []
    interval = 1.0 / RATE_PER_LIMITER
    next_at = time.monotonic()
    while (sent := time.monotonic()) < until:
        reply = await client.should_allow(key, timeout=2.0)
        answers.append((sent, time.monotonic(), reply.reason, reply.allowed))
        next_at = max(next_at + interval, sent)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return answers


def evalsha_calls(topology: RedisTopology, address: tuple[str, int]) -> int:
    with topology.client(address) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_partition_isolated_limiter_stops_within_its_lease(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path, mode: str
) -> None:
    node_a = start(processes, topology, tmp_path, LIMITER_A, mode)
    node_b = start(processes, topology, tmp_path, LIMITER_B, mode)
    client_a, client_b = LimiterClient(node_a.address), LimiterClient(node_b.address)
    old_master = topology.current_master()
    key = f"split:{uuid.uuid4()}"
    cut = [(MASTER, peer) for peer in (*REPLICAS, *SENTINELS)]
    cut += [(LIMITER_A, sentinel) for sentinel in SENTINELS]
    try:
        with Partition(cut):
            started = time.monotonic()
            until = started + PARTITION_S
            load = asyncio.gather(paced(client_a, key, until), paced(client_b, key, until))
            # A: NOT_SERVING within the lease (plus one health interval to notice).
            not_serving = await asyncio.to_thread(
                wait_until,
                lambda: (
                    True if node_a.health() == health_pb2.HealthCheckResponse.NOT_SERVING else None
                ),
                timeout=LEASE_S + 2.0,
                waiting_for="the isolated limiter to report NOT_SERVING",
            )
            assert not_serving
            noticed_s = time.monotonic() - started
            answers_a, answers_b = await load
            old_writes_late = evalsha_calls(topology, old_master)
            new_master = topology.wait_for_master_change(old_master, timeout=10.0)
        # After the lease, A answered only with the failure mode: it wrote nothing more.
        late_a = [a for a in answers_a if a[1] > started + LEASE_S + 1.0]
        assert late_a and all(reason not in AUTHORITATIVE for _, _, reason, _ in late_a)
        # B follows the new master and decides authoritatively by the end.
        assert answers_b[-1][2] in AUTHORITATIVE
        assert evalsha_calls(topology, old_master) == old_writes_late
        admitted = sum(allowed for _, _, _, allowed in (*answers_a, *answers_b))
        fail_answers = sum(
            reason not in AUTHORITATIVE for _, _, reason, _ in (*answers_a, *answers_b)
        )
        print(
            f"\npartition ({mode}): {len(answers_a) + len(answers_b)} requests on one "
            f"limit-{LIMIT} key in {PARTITION_S:.0f} s, {admitted} admitted "
            f"(over-admission {admitted - LIMIT}), {fail_answers} failure-mode answers; "
            f"isolated limiter NOT_SERVING after {noticed_s:.2f} s; new master {new_master}"
        )
        # Whatever A admitted, it admitted early: never after the lease (plus a second of
        # slack for an attempt in flight and the health interval).
        assert all(
            t <= started + LEASE_S + 1.0 for _, t, reason, _ in answers_a if reason in AUTHORITATIVE
        )
    finally:
        await client_a.close()
        await client_b.close()


async def test_limiter_cut_off_from_the_sentinels_stops_writing_within_its_lease(
    topology: RedisTopology, processes: ProcessGroup, tmp_path: Path
) -> None:
    """The master is fine; only limiter A loses the sentinels. Without a lease it would go
    on writing to whatever it last knew as master, for as long as the cut lasts.

    What A must do is bounded by its lease, not by how fast this machine is: its last
    confirmation of the master came at most a health interval (plus slack) before the cut,
    so the lease surely holds for ``CUT_LEASE_S - HEALTH_INTERVAL_S - 0.5`` s after it and
    surely ends ``CUT_LEASE_S`` after it. Both limiters get a decision timeout well above a
    busy machine's scheduling delays, so a request sent early enough to be decided before
    the lease can end is answered by Redis; one sent after the lease ended must get the
    failure mode (whatever the delays: A no longer has a master to ask)."""
    settings = {
        "LIMITER_MASTER_LEASE_MS": str(int(CUT_LEASE_S * 1000)),
        "LIMITER_DECISION_TIMEOUT_MS": str(int(CUT_DECISION_TIMEOUT_S * 1000)),
    }
    node_a = start(processes, topology, tmp_path, LIMITER_A, "closed", settings)
    node_b = start(processes, topology, tmp_path, LIMITER_B, "closed", settings)
    client_a, client_b = LimiterClient(node_a.address), LimiterClient(node_b.address)
    try:
        with Partition([(LIMITER_A, sentinel) for sentinel in SENTINELS]):
            started = time.monotonic()
            until = started + CUT_LEASE_S + 4.0
            answers_a, answers_b = await asyncio.gather(
                paced(client_a, f"a:{uuid.uuid4()}", until),
                paced(client_b, f"b:{uuid.uuid4()}", until),
            )
            # A decided while its lease surely held (each decision, timeout included, over
            # before the lease could end), then only answered with the failure mode.
            held_until = started + CUT_LEASE_S - HEALTH_INTERVAL_S - 0.5
            early = [
                reason
                for sent, _, reason, _ in answers_a
                if sent + CUT_DECISION_TIMEOUT_S < held_until
            ]
            late = [
                reason for sent, _, reason, _ in answers_a if sent > started + CUT_LEASE_S + 0.5
            ]
            print(
                f"\ncut off: A {len(early)} early answers {collections.Counter(early)}, "
                f"{len(late)} late answers {collections.Counter(late)}; B {len(answers_b)} answers"
            )
            assert early and set(early) <= AUTHORITATIVE
            assert late and set(late) == {proto.Reason.REASON_FAIL_CLOSED}
            assert {reason for _, _, reason, _ in answers_b} <= AUTHORITATIVE
            assert node_a.health() == health_pb2.HealthCheckResponse.NOT_SERVING
            assert node_b.health() == health_pb2.HealthCheckResponse.SERVING
        # Healed: A confirms the master again and decides.
        wait_until(
            lambda: True if node_a.health() == health_pb2.HealthCheckResponse.SERVING else None,
            timeout=10.0,
            waiting_for="limiter A to be SERVING once the sentinels answer again",
        )
        reply = await client_a.should_allow(f"a:{uuid.uuid4()}")
        assert reply.reason in AUTHORITATIVE
    finally:
        await client_a.close()
        await client_b.close()
