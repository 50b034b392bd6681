"""The Redis client the backends use (``make_client``): its short way through a command keeps
redis-py's guarantees. Each test reads Redis's own counters (connections received, clients
connected, clients blocked) instead of the pool's internals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from devstack import StandaloneRedis
from devstack.waiting import wait_until
from limiter_service.backends.connection import RedisAccess, make_client, pool_options

_MAX_CONNECTIONS = 2


async def _run(client: aioredis.Redis, *args: str | int) -> object:
    """``_run(client, *args)`` (untyped in redis-py)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


@pytest.fixture
async def client(redis_server: StandaloneRedis) -> AsyncIterator[aioredis.Redis]:
    options = pool_options(5.0, _MAX_CONNECTIONS, RedisAccess())
    pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, **options)
    client = make_client(pool)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture
def admin(redis_server: StandaloneRedis) -> Iterator[redis.Redis]:
    """One connection of the test's own, open throughout (it is counted once)."""
    with redis_server.client() as connection:
        connection.ping()
        yield connection


def _received(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_connections_received"])


async def test_many_concurrent_commands_share_the_pool(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    before = _received(admin)
    replies = await asyncio.gather(*(_run(client, "ECHO", str(i)) for i in range(50)))
    assert replies == [str(i).encode() for i in range(50)]
    assert _received(admin) - before <= _MAX_CONNECTIONS


async def test_a_reply_error_keeps_its_connection(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    await _run(client, "PING")
    before = _received(admin)
    with pytest.raises(ResponseError):
        await _run(client, "NO-SUCH-COMMAND")
    assert await _run(client, "ECHO", "after") == b"after"
    assert _received(admin) == before


async def test_a_cancelled_command_drops_its_connection(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    """A reply that never came must not be read as the next command's."""
    key = "test:redis-connection:blocked"
    await _run(client, "PING")
    before = _received(admin)
    blocked = asyncio.ensure_future(_run(client, "BLPOP", key, 4))
    await asyncio.to_thread(
        wait_until,
        lambda: int(admin.info("clients")["blocked_clients"]) >= 1 or None,
        timeout=5,
        waiting_for="the BLPOP to block",
    )
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    admin.rpush(key, "late")  # would be the answer to a BLPOP still on that socket
    try:
        assert await _run(client, "ECHO", "next") == b"next"
        assert await _run(client, "ECHO", "again") == b"again"
        assert _received(admin) > before
    finally:
        admin.delete(key)


async def test_sequential_commands_take_the_short_way(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a connection is idle, a command neither checks it out nor back in through
    redis-py's pool methods (the CPU the short way saves): if a redis-py upgrade renamed
    what it reads, this fails instead of every call silently taking the long way."""
    assert await _run(client, "ECHO", "first") == b"first"  # opens the connection
    pool = client.connection_pool

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pool's own get_connection/release was used")

    monkeypatch.setattr(pool, "get_connection", refuse)
    monkeypatch.setattr(pool, "release", refuse)
    for index in range(5):
        assert await _run(client, "ECHO", f"again {index}") == f"again {index}".encode()
