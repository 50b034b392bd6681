"""Questions the harness asks Redis data nodes and Sentinels, with typed answers.

Each function sends one command through a client it is given and turns the reply into
plain Python values. Network and protocol failures surface as ``redis.RedisError``;
callers polling for a condition treat those as "not yet".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "Address",
    "connect",
    "master_link_up",
    "role",
    "sentinel_failover",
    "sentinel_master_addr",
    "sentinel_master_state",
    "sentinel_replicas",
]

Address = tuple[str, int]
"""A (host, port) pair."""


def connect(
    address: Address,
    password: str | None,
    *,
    timeout: float = 1.0,
    single_connection: bool = False,
) -> redis.Redis:
    """A sync client for ``address`` that decodes replies to ``str`` and never retries.

    ``timeout`` (seconds) bounds connecting and each reply. With ``single_connection``
    every command goes over one connection, which ``WAIT`` needs. Close it after use.
    """
    host, port = address
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=single_connection,
    )


def role(node: redis.Redis) -> str:
    """The first field of ``ROLE``: "master", "slave" or "sentinel"."""
    return str(node.role()[0])


def master_link_up(node: redis.Redis, master: Address) -> bool:
    """Whether ``node`` is a replica of ``master`` and its link to it is up."""
    info = node.info("replication")
    return (
        info.get("role") == "slave"
        and (str(info.get("master_host")), int(info.get("master_port", 0))) == master
        and info.get("master_link_status") == "up"
    )


def sentinel_master_addr(sentinel: redis.Redis, master_name: str) -> Address | None:
    """The master address this Sentinel currently announces; ``None`` if unknown."""
    reply = _command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name)
    if not reply:
        return None
    if not isinstance(reply, Sequence) or len(reply) != 2:
        raise TypeError(f"unexpected Sentinel reply {reply!r}")
    host, port = reply
    return (str(host), int(port))


def sentinel_master_state(sentinel: redis.Redis, master_name: str) -> dict[str, str]:
    """``SENTINEL MASTER`` as a mapping of field name to text value."""
    return _fields(_command(sentinel, "SENTINEL", "MASTER", master_name))


def sentinel_replicas(sentinel: redis.Redis, master_name: str) -> list[dict[str, str]]:
    """``SENTINEL REPLICAS``: one field mapping per replica the Sentinel knows."""
    reply = _command(sentinel, "SENTINEL", "REPLICAS", master_name)
    if not isinstance(reply, Sequence):
        raise TypeError(f"unexpected Sentinel reply {reply!r}")
    return [_fields(item) for item in reply]


def sentinel_failover(sentinel: redis.Redis, master_name: str) -> None:
    """Ask the Sentinel to fail ``master_name`` over now, without waiting for it.

    Raises ``redis.ResponseError`` when Sentinel refuses (e.g. "-NOGOODSLAVE",
    "-INPROG").
    """
    _command(sentinel, "SENTINEL", "FAILOVER", master_name)


def _command(client: redis.Redis, *args: str) -> object:
    # redis-py leaves execute_command untyped; callers check the reply's shape.
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _fields(reply: object) -> dict[str, str]:
    # redis-py parses some SENTINEL replies into dicts and leaves others as flat
    # [key, value, ...] lists, depending on its version and the protocol.
    if isinstance(reply, Mapping):
        return {str(key): str(value) for key, value in reply.items()}
    if isinstance(reply, Sequence) and not isinstance(reply, str):
        items = list(reply)
        return {str(key): str(value) for key, value in zip(items[::2], items[1::2], strict=True)}
    raise TypeError(f"unexpected Sentinel reply {reply!r}")
