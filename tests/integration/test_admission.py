"""Admission control on a real limiter and Redis: a client flooding big batches cannot take
the limiter away from a well-behaved client on another address, and a shed call is
``RESOURCE_EXHAUSTED``/``OVERLOADED``, which the client library answers with its failure
mode.

The flooder is its own process (``tests.integration.flood``) on 127.0.0.1; the well-behaved
client reaches the limiter through a relay from 127.0.0.2, so the limiter tells them apart
by address, as it would two hosts.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path

import grpc
import pytest

from devstack import REPO_ROOT, ProcessGroup, StandaloneRedis, free_port, start_redis, wait_until
from devstack.limiter import start_limiter
from ratelimit_client import LimiterClient as LibraryClient
from ratelimit_client import LimiterSettings, Reason, proto
from ratelimit_client.errors import OVERLOADED, error_for_status, failure_from
from tests.integration.client import LimiterClient
from tests.integration.relay import Relay

pytestmark = pytest.mark.integration

FLOOD_SECONDS = 14
# Batches of 1000 in flight: twice the 8, so that without admission control the
# client's decisions queue behind enough of them to pass the 100 ms decision timeout
# (measured: 51 and 90 of 600 authoritative); with 8 this machine absorbed the flood
# admission or not (593-595 of 600 with it switched off) and the test could not fail.
FLOOD_CALLS = 16
GOOD_RATE = 100  # calls per second, each with its own deadline
GOOD_CALLS = 600
GOOD_DEADLINE_S = 0.25
AUTHORITATIVE = {proto.Reason.REASON_WITHIN_LIMIT, proto.Reason.REASON_OVER_LIMIT}
# Share of the calls the flood may cost an authoritative answer, over the client's misses
# alone. Measured with admission control: 0-8 calls in 14 runs of 16 (a busy loop on one of
# the 2 cores in some), 28 and 41 with two more CPU hogs; without it: 510 and 549.
FLOOD_MISSES_ALLOWED = 0.05


async def well_behaved(address: str, phase: str) -> collections.Counter[str]:
    """``GOOD_CALLS`` ShouldAllow calls at ``GOOD_RATE`` per second (started on time
    whether or not earlier ones were answered), on keys named after ``phase``; counts of
    each reason and each error."""
    counts: collections.Counter[str] = collections.Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = proto.RateLimiterStub(channel)

        async def one(index: int) -> None:
            request = proto.ShouldAllowRequest(key=f"good:{phase}:{index}")
            try:
                reply = await stub.ShouldAllow(request, timeout=GOOD_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                counts[exc.code().name] += 1
            else:
                counts[proto.Reason.Name(reply.reason)] += 1

        await stub.ShouldAllow(proto.ShouldAllowRequest(key="good:connect"), timeout=5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with asyncio.TaskGroup() as calls:
            for index in range(GOOD_CALLS):
                await asyncio.sleep(max(0.0, start + index / GOOD_RATE - loop.time()))
                calls.create_task(one(index))
    return counts


async def test_a_flood_of_batches_does_not_starve_a_well_behaved_client(
    redis_server: StandaloneRedis, processes: ProcessGroup
) -> None:
    """The well-behaved client runs twice on the same limiter: alone, then under the flood.
    Alone it shows what this machine costs it: on a busy 2-core machine the limiter is now
    and then held off the CPU past its 100 ms decision timeout (a fail-open answer) or the
    client's 250 ms deadline, flood or not. The flood may add at most
    ``FLOOD_MISSES_ALLOWED`` of the calls to those misses; without admission control it
    adds most of them (the client's decisions queue behind the flood's batches)."""
    env = {"REDIS_URL": redis_server.url, "RATE_LIMIT": "1000000000", "TIME_WINDOW": "3600"}
    node = start_limiter(processes, "limiter", free_port(), env)
    async with Relay(node.address, "127.0.0.2") as relay:
        alone = await well_behaved(relay.address, "alone")
        flooder = processes.start(
            "flooder",
            [
                *(sys.executable, "-m", "tests.integration.flood", node.address),
                *("--seconds", str(FLOOD_SECONDS), "--concurrency", str(FLOOD_CALLS)),
            ],
            cwd=REPO_ROOT,
        )
        # Measure the flood's steady state, not the limiter's first moments under it
        # (Redis connections opening): wait until it has decided 50 batches.
        with redis_server.client() as admin:
            await asyncio.to_thread(
                wait_until,
                lambda: int(admin.hget("rl:{default:flood:999}:fw", "n") or 0) >= 50 or None,
                timeout=30,
                waiting_for="the limiter to have decided 50 of the flooder's batches",
                watch=(flooder,),
            )
        flooded = await well_behaved(relay.address, "flooded")
    assert flooder.is_running(), "the flood ended before the well-behaved client did"
    await asyncio.to_thread(flooder.wait_exit, 30)
    flood = json.loads(flooder.log_tail(1))
    print(f"\nwell-behaved client alone: {dict(alone)}; flooded: {dict(flooded)}; flooder: {flood}")

    assert sum(alone.values()) == sum(flooded.values()) == GOOD_CALLS
    missed_alone, missed = (
        GOOD_CALLS - sum(counts[proto.Reason.Name(reason)] for reason in AUTHORITATIVE)
        for counts in (alone, flooded)
    )
    assert missed <= missed_alone + FLOOD_MISSES_ALLOWED * GOOD_CALLS, (alone, flooded)
    assert flood.get("OK", 0) > 0  # the flooder was served too, within its share


async def test_a_shed_call_is_overloaded_and_the_client_library_fails_open(
    processes: ProcessGroup, tmp_path: Path
) -> None:
    redis_server = start_redis(processes, "redis-paused", workdir=tmp_path / "redis")
    env = {
        "REDIS_URL": redis_server.url,
        "REDIS_TIMEOUT_MS": "10000",
        "LIMITER_DECISION_TIMEOUT_MS": "20000",
        "LIMITER_MAX_PEER_RPCS_IN_FLIGHT": "1",  # one call at a time from 127.0.0.1
    }
    node = start_limiter(processes, "limiter", free_port(), env)
    client = LimiterClient(node.address)
    library = LibraryClient(LimiterSettings(limiter_addr=node.address, timeout_ms=5000))
    with redis_server.client() as admin:
        admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
        held = asyncio.ensure_future(client.should_allow("held", timeout=20))
        await asyncio.to_thread(
            wait_until,
            lambda: admin.info("clients")["blocked_clients"] >= 1 or None,
            timeout=10,
            waiting_for="the first call to be held in Redis",
        )
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.should_allow("shed")
            decision = await library.decide("shed-too")
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            answer = await held
            await client.close()
            await library.close()
    failure = failure_from(refused.value)
    assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.reason == OVERLOADED
    assert error_for_status(failure, "default") is None
    assert decision.reason is Reason.FAIL_OPEN  # not InvalidKey: the library's failure mode
    assert answer.reason == proto.Reason.REASON_WITHIN_LIMIT
