"""How the Redis backend reaches the current master.

A ``Connector`` hands out a client for the master and hears about failures so it can look
again. ``StaticConnector`` serves a fixed ``REDIS_URL``; ``sentinel.SentinelConnector`` asks
the sentinels. Clients have short timeouts and no retries of their own: the backend retries
within the caller's deadline, and a blocking pool makes callers wait for a connection rather
than fail with "too many connections".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)


class Connector(Protocol):
    """Gives the backend a client for the current master."""

    description: str

    async def client(self) -> aioredis.Redis:
        """A client for the master as currently known; raises a redis ``ConnectionError``
        when no master is known."""
        ...

    async def failed(self, client: aioredis.Redis, error: Exception) -> None:
        """``client`` failed with ``error`` (connection lost, READONLY, LOADING, ...): look up
        the master again before the next attempt."""
        ...

    async def refresh(self) -> None:
        """Re-check where the master is (called about once a second by the health check)."""
        ...

    async def close(self) -> None: ...


class PackingConnection(aioredis.Connection):
    """A TCP connection that encodes commands with hiredis (C) instead of pure Python: a
    batch's EVALSHA carries four arguments per decision, and encoding them dominated.
    It also writes without a task of its own (``send_packed_command``).
    ``source_address`` (set on a subclass, see ``connection_class``) is the local address
    its socket binds before connecting."""

    source_address: str | None = None

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        if self.source_address:
            arguments["local_addr"] = (self.source_address, 0)
        return arguments

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """redis-py's, with the same errors and the same disconnects, but the write is
        bounded by ``asyncio.timeout`` in place: redis-py's ``asyncio.wait_for`` runs it in
        a new task (before Python 3.12), one more task and loop turn per round trip, a
        tenth of a decision's CPU."""
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        writer = cast("asyncio.StreamWriter", self._writer)
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            writer.writelines(command)
            # drain() only waits while the socket's buffer is over its high-water mark;
            # with nothing buffered it returns at once and needs no timer.
            if self.socket_timeout and writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.socket_timeout):
                    await writer.drain()
            else:
                await writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            number, text = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else exc.args[:2]
            raise RedisConnectionError(f"Error {number} while writing to socket. {text}.") from exc
        except BaseException:
            # A write cut short leaves the stream mid-command: never reuse it.
            await self.disconnect(nowait=True)
            raise


class PackingSSLConnection(PackingConnection, aioredis.SSLConnection):
    """``PackingConnection`` over TLS (``ssl_*`` connection options)."""


class TlsFiles(NamedTuple):
    """PEM files for TLS towards Redis/Sentinel: the CA that signed the servers'
    certificates, and optionally our own certificate and key (when servers ask for one)."""

    ca: str
    cert: str | None = None
    key: str | None = None


class RedisAccess(NamedTuple):
    """How to reach and log in to a set of servers (the data nodes, or the sentinels):
    ACL ``username`` (empty: the default user), ``password``, ``tls`` (``None``: plain
    TCP) and the ``source_address`` our sockets bind (``None``: any)."""

    username: str = ""
    password: str = ""
    tls: TlsFiles | None = None
    source_address: str | None = None

    def connection_options(self) -> dict[str, Any]:
        """Connection-class and login options for a redis-py connection pool."""
        base: type[PackingConnection] = (
            PackingSSLConnection if self.tls is not None else PackingConnection
        )
        if self.source_address:
            name = f"Sourced{base.__name__}"
            base = type(name, (base,), {"source_address": self.source_address})
        options: dict[str, Any] = {"connection_class": base}
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        if self.tls is not None:
            options["ssl_ca_certs"] = self.tls.ca
            options["ssl_certfile"] = self.tls.cert
            options["ssl_keyfile"] = self.tls.key
            options["ssl_cert_reqs"] = "required"
        return options


def pool_options(timeout_s: float, max_connections: int, access: RedisAccess) -> dict[str, Any]:
    """Connection-pool settings shared by every client of the backend."""
    return {
        **access.connection_options(),
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "max_connections": max_connections,
        "timeout": None,  # wait for a free connection; the caller's deadline bounds the wait
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


class LeanRedis(aioredis.Redis):
    """redis-py's client, with a shorter way through ``execute_command`` for a pooled
    client without retries (what ``make_client`` builds): a connection from the pool, the
    command, its reply (through the same reply callbacks), the connection back. A
    connection or timeout error disconnects the connection, as redis-py's own path does
    before it gives up. Left out: redis-py's retry loop (we retry ourselves, within the
    caller's deadline), its OpenTelemetry recording (we record our own metrics) and its
    HIMPORT SET handling (never sent). Together they cost about a sixth of a decision's
    CPU on a round trip of its own."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.single_connection_client or self.connection is not None:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        pool = self.connection_pool
        conn = await _checkout(pool)
        try:
            await conn.send_command(*args)
            return await self.parse_response(conn, args[0], **options)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            await conn.disconnect(error=exc, failure_count=1)
            raise
        finally:
            await _checkin(pool, conn)


async def _checkout(pool: aioredis.ConnectionPool) -> aioredis.Connection:
    """A connection from ``pool``: an idle one taken directly when nobody holds the pool's
    lock and it is not in maintenance (what redis-py's blocking ``get_connection`` would
    hand out at once, less its locking, timer and OpenTelemetry recording: a tenth of a
    decision's CPU), else whatever ``get_connection`` gives. Either way the connection is
    checked as redis-py checks it (connected, nothing unread) and goes back on failure."""
    idle = getattr(pool, "_available_connections", None)
    condition = getattr(pool, "_condition", None)
    if (
        not idle
        or getattr(pool, "_in_maintenance", True)
        or not isinstance(condition, asyncio.Condition)
        or condition.locked()
    ):
        connection: aioredis.Connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        return connection
    connection = pool.get_available_connection()  # type: ignore[no-untyped-call]
    try:
        await pool.ensure_connection(connection)
    except BaseException:
        await pool.release(connection)
        raise
    return connection


async def _checkin(pool: aioredis.ConnectionPool, connection: aioredis.Connection) -> None:
    """Give ``connection`` back to ``pool``: straight onto its idle list when nobody waits
    for a connection or holds the pool's locks, it is not in maintenance and the connection
    need not reconnect (what redis-py's ``release`` then does, less its locking and the
    release event and OpenTelemetry count nothing of ours listens to), else through
    ``release``."""
    condition = getattr(pool, "_condition", None)
    lock = getattr(pool, "_lock", None)
    in_use = getattr(pool, "_in_use_connections", None)
    idle = getattr(pool, "_available_connections", None)
    if (
        in_use is None
        or idle is None
        or not isinstance(condition, asyncio.Condition)
        or condition.locked()
        or getattr(condition, "_waiters", True)  # someone to wake: only release() does
        or not isinstance(lock, asyncio.Lock)
        or lock.locked()
        or getattr(pool, "_in_maintenance", True)
        or connection.should_reconnect()  # type: ignore[no-untyped-call]
    ):
        await pool.release(connection)
        return
    in_use.remove(connection)
    idle.append(connection)


def make_client(pool: aioredis.BlockingConnectionPool) -> aioredis.Redis:
    """A client without retries of its own on ``pool``."""
    return LeanRedis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class MasterView(NamedTuple):
    """What a node says of itself: its ``ROLE`` (``master``, ``slave``, ...) and ``run_id``
    (new on every start of the process)."""

    role: str
    run_id: str


async def inspect(client: aioredis.Redis) -> MasterView:
    """``ROLE`` and ``INFO server``'s run_id, in one round trip (redis errors propagate)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.execute_command("ROLE")
        pipe.info("server")
        role_reply, info = await pipe.execute()
    role = role_reply[0]
    return MasterView(role.decode() if isinstance(role, bytes) else str(role), str(info["run_id"]))


class RestartWatch:
    """Notices that the master at an unchanged address restarted (its run_id changed):
    counters written since its last persistence are gone. Logs and counts it."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.restarts = 0

    def forget(self) -> None:
        """The address changed: a new run_id is expected, not a restart."""
        self.run_id = None

    def saw(self, run_id: str, address: str) -> None:
        if self.run_id is not None and run_id != self.run_id:
            self.restarts += 1
            log.warning(
                "redis master %s restarted (run_id %s -> %s): increments after its last "
                "AOF write are lost (about 1 s at most with appendfsync everysec)",
                address,
                self.run_id[:8],
                run_id[:8],
            )
        self.run_id = run_id


class StaticConnector:
    """A fixed Redis URL; reconnection is left to the pool. The master never changes
    address (``master_changes`` stays 0); its restarts are counted (``restarts``)."""

    master_changes = 0

    def __init__(
        self, url: str, access: RedisAccess, timeout_s: float, max_connections: int
    ) -> None:
        # The URL's own options win: ``unix://`` and ``rediss://`` bring their connection
        # classes (``rediss://`` then verifies with the system CAs unless REDIS_TLS_CA).
        options = pool_options(timeout_s, max_connections, access)
        pool = aioredis.BlockingConnectionPool.from_url(url, **options)
        self._client = make_client(pool)
        safe = pool.connection_kwargs
        self.description = f"redis {safe.get('host', '?')}:{safe.get('port', '?')}"
        self.restarts = RestartWatch()

    async def client(self) -> aioredis.Redis:
        return self._client

    async def failed(self, client: aioredis.Redis, error: Exception) -> None:
        return None

    async def refresh(self) -> None:
        """Notice a restart of the server (there is no failover to follow)."""
        view = await inspect(self._client)
        self.restarts.saw(view.run_id, self.description)

    async def close(self) -> None:
        await self._client.aclose(close_connection_pool=True)
