"""Connection hygiene: streams that open and never send are capped per connection and
released when their connection reaches its age, the limiter's memory comes back to about
where it started, and an idle connection is closed.

The client here asks for 20,000 silent streams over 20 connections and gets as many on each
as the limiter allows, then does nothing; a client ignoring the limit gets no more. States
are read from the limiter itself: its sockets and its RSS in ``/proc/<pid>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from devstack import ProcessGroup, StandaloneRedis, free_port, wait_until
from devstack.limiter import LimiterNode, start_limiter
from tests.integration.client import LimiterClient
from tests.integration.silent_streams import SilentConnection

pytestmark = pytest.mark.integration

CONNECTIONS = 20
STREAMS = 20_000
STREAM_LIMIT = 100
AGE_MS = 2000
GRACE_MS = 1000
# What RSS may keep after the burst is gone: allocator pools and gRPC's caches that the
# first burst grows and later ones reuse (measured: +12 MB after 2,000 silent streams, and
# a second burst adds under 1 MB). Without trimming the freed heap it kept +42 MB; without
# the stream limit and the age the streams, and their 100+ MB, are held for ever.
RSS_TOLERANCE_KB = 20 * 1024


def rss_kb(pid: int) -> int:
    """The process's resident set size, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def sockets(pid: int) -> int:
    """How many sockets the process has open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def start(processes: ProcessGroup, redis_server: StandaloneRedis, **env: str) -> LimiterNode:
    return start_limiter(
        processes,
        "limiter",
        free_port(),
        {"REDIS_URL": redis_server.url, **env},
    )


async def warm_up(node: LimiterNode) -> None:
    """A few real calls, so that what gRPC allocates once is allocated before measuring."""
    client = LimiterClient(node.address)
    try:
        await asyncio.gather(*(client.should_allow(f"warm:{i}") for i in range(50)))
    finally:
        await client.close()


async def test_silent_streams_are_capped_released_and_their_memory_returned(
    redis_server: StandaloneRedis, processes: ProcessGroup
) -> None:
    node = start(
        processes,
        redis_server,
        LIMITER_MAX_CONNECTION_AGE_MS=str(AGE_MS),
        LIMITER_MAX_CONNECTION_AGE_GRACE_MS=str(GRACE_MS),
        LIMITER_MEMORY_TRIM_INTERVAL_S="0.5",
    )
    pid = node.process.pid
    await warm_up(node)  # also opens the Redis connections it needs
    base_sockets = sockets(pid)
    rss_before = rss_kb(pid)

    connections = [SilentConnection(node.host, node.port) for _ in range(CONNECTIONS)]
    peak = rss_before
    try:
        await asyncio.gather(*(connection.open() for connection in connections))
        for connection in connections:
            await connection.open_streams(STREAMS // CONNECTIONS)
        opened = sum(connection.opened for connection in connections)
        # Held until each connection reaches its age: then GOAWAY, the grace, and close.
        everyone_closed = asyncio.gather(*(c.closed.wait() for c in connections))
        async with asyncio.timeout((AGE_MS * 1.1 + GRACE_MS) / 1000 + 20):
            while not everyone_closed.done():
                peak = max(peak, rss_kb(pid))
                await asyncio.wait([everyone_closed], timeout=0.05)
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))

    assert {c.stream_limit for c in connections} == {STREAM_LIMIT}
    assert opened == CONNECTIONS * STREAM_LIMIT
    assert all(connection.goaway for connection in connections)  # closed by age, not reset
    await asyncio.to_thread(
        wait_until,
        lambda: sockets(pid) <= base_sockets or None,
        timeout=10,
        waiting_for="the limiter to close every silent connection",
    )

    def rss_back() -> int | None:
        rss = rss_kb(pid)
        return rss if rss <= rss_before + RSS_TOLERANCE_KB else None

    rss_after = await asyncio.to_thread(
        wait_until,
        rss_back,
        timeout=10,
        waiting_for=f"the limiter's RSS to come back within {RSS_TOLERANCE_KB} kB of the "
        f"{rss_before} kB it had before the {peak} kB peak",
    )
    print(
        f"\nsilent streams: {opened} held on {CONNECTIONS} connections; RSS {rss_before} kB "
        f"before, {peak} kB at peak, {rss_after} kB after"
    )


async def test_a_client_ignoring_the_stream_limit_holds_no_more_than_it(
    redis_server: StandaloneRedis, processes: ProcessGroup
) -> None:
    node = start(processes, redis_server)
    connection = SilentConnection(node.host, node.port)
    try:
        # Sent with the connection preface, before the limiter could say how many it allows.
        await connection.open(rush=STREAMS // CONNECTIONS)
        await connection.round_trip()
        held = 0 if connection.closed.is_set() else connection.opened - connection.refused
    finally:
        await connection.close()
    assert held <= STREAM_LIMIT


async def test_an_idle_connection_is_closed(
    redis_server: StandaloneRedis, processes: ProcessGroup
) -> None:
    node = start(processes, redis_server, LIMITER_MAX_CONNECTION_IDLE_MS="300")
    connection = SilentConnection(node.host, node.port)
    await connection.open()
    try:
        await asyncio.wait_for(connection.closed.wait(), 10)
    finally:
        await connection.close()
    assert connection.goaway
