"""Finding the master through Redis Sentinel, and following it across failovers.

The connector asks the sentinels (in order, the last one that answered first) for the
master's address, keeps one client for it, and replaces that client when a failure makes it
look again and the sentinels name another address. It never sends writes to an address a
sentinel did not name as master; a demoted master refuses them (READONLY), which sends the
backend back here.

**The master lease.** A look-up *confirms* the master when a sentinel names it and the node
itself says ``ROLE`` master (checked on every look-up: on connect, after each failover, and
about once a second from the health check). The connector hands out a client only within
``lease_s`` of the last confirmation (counted from when the question was asked); past it,
with no sentinel answering, decisions take the failure mode and health reports NOT_SERVING.
So a limiter cut off from every sentinel stops writing to what may be an old master within
the lease, while the others follow the new one. A run_id that changes at an unchanged
address is a restart of the master: logged and counted (``restarts``); a new address after
the first one found (a failover) is counted in ``master_changes``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from limiter_service.backends.connection import (
    RedisAccess,
    RestartWatch,
    inspect,
    make_client,
    pool_options,
)

log = logging.getLogger(__name__)
Address = tuple[str, int]


class SentinelConnector:
    """Master discovery with a single look-up in flight at a time."""

    def __init__(
        self,
        sentinels: list[Address],
        master_name: str,
        data: RedisAccess,
        sentinel: RedisAccess,
        timeout_s: float,
        max_connections: int,
        lease_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``data``: how to log in to the data nodes; ``sentinel``: to the sentinels."""
        self._data = data
        self._lease_s = lease_s
        self._clock = clock
        self._confirmed_at: float | None = None
        self._refused: Address | None = None
        self.restarts = RestartWatch()
        self.master_changes = 0
        self._sentinels = list(sentinels)
        self._master_name = master_name
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._sentinel_clients = [
            aioredis.Redis(
                connection_pool=aioredis.ConnectionPool(
                    host=host,
                    port=port,
                    socket_timeout=timeout_s,
                    socket_connect_timeout=timeout_s,
                    max_connections=2,
                    **sentinel.connection_options(),
                ),
                retry=Retry(NoBackoff(), 0),
            )
            for host, port in self._sentinels
        ]
        self._address: Address | None = None
        self._client: aioredis.Redis | None = None
        self._lookup: asyncio.Task[None] | None = None
        hosts = ",".join(f"{h}:{p}" for h, p in self._sentinels)
        self.description = f"sentinel {hosts} master={master_name}"

    def _leased(self) -> bool:
        confirmed = self._confirmed_at
        return confirmed is not None and self._clock() - confirmed <= self._lease_s

    async def client(self) -> aioredis.Redis:
        """The master's client while its lease holds (looking it up again when not);
        raises a redis ``ConnectionError`` naming the reason otherwise."""
        if self._client is None or not self._leased():
            await self.refresh()
        if self._client is None:
            raise RedisConnectionError(f"no sentinel names a master for {self._master_name!r}")
        if not self._leased():
            raise RedisConnectionError(
                f"master lease expired: no sentinel confirmed a master for "
                f"{self._master_name!r} in the last {self._lease_s * 1000:.0f} ms"
            )
        return self._client

    async def failed(self, client: aioredis.Redis, error: Exception) -> None:
        if client is self._client:
            await self.refresh()

    async def refresh(self) -> None:
        """Ask the sentinels for the master; switch clients when the address changed.
        Concurrent callers share one look-up."""
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(self._look_up())
        await asyncio.shield(self._lookup)

    async def _look_up(self) -> None:
        asked_at = self._clock()
        address = await self._ask_sentinels()
        if address is None:
            return
        if address != self._address:
            await self._switch(address)
        client = self._client
        if client is None:
            return
        try:
            view = await inspect(client)
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("master %s:%s did not answer ROLE: %s", *address, exc)
            return
        if view.role != "master":
            if self._refused != address:
                self._refused = address
                log.warning(
                    "a sentinel names %s:%s as master but it says ROLE %s: not writing to it",
                    *address,
                    view.role,
                )
            return
        self._refused = None
        self.restarts.saw(view.run_id, f"{address[0]}:{address[1]}")
        self._confirmed_at = asked_at

    async def _switch(self, address: Address) -> None:
        """Replace the client with one for ``address`` (not yet confirmed)."""
        old, self._client = self._client, None
        self._confirmed_at = None
        self.restarts.forget()
        if self._address is not None:
            self.master_changes += 1
        options = pool_options(self._timeout_s, self._max_connections, self._data)
        pool = aioredis.BlockingConnectionPool(host=address[0], port=address[1], **options)
        self._client = make_client(pool)
        log.warning(
            "redis master is now %s:%s (was %s)",
            *address,
            f"{self._address[0]}:{self._address[1]}" if self._address else "unknown",
        )
        self._address = address
        if old is not None:
            await old.aclose(close_connection_pool=True)

    async def _ask_sentinels(self) -> Address | None:
        for index, sentinel in enumerate(self._sentinel_clients):
            try:
                reply = await sentinel.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self._master_name
                )
            except (RedisError, OSError) as exc:
                log.debug("sentinel %s:%s did not answer: %s", *self._sentinels[index], exc)
                continue
            if reply:
                if index:  # ask the one that answered first next time
                    self._sentinel_clients.insert(0, self._sentinel_clients.pop(index))
                    self._sentinels.insert(0, self._sentinels.pop(index))
                host, port = reply[0], reply[1]
                host = host.decode() if isinstance(host, bytes) else str(host)
                return host, int(port)
        return None

    async def close(self) -> None:
        if self._lookup is not None and not self._lookup.done():
            self._lookup.cancel()
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
        for sentinel in self._sentinel_clients:
            await sentinel.aclose(close_connection_pool=True)
