"""Configuration files for the local Redis data nodes and Sentinels.

Pure text rendering, no processes: what a node runs with is readable in one place.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "MIN_REPLICAS_MAX_LAG_S",
    "check_token",
    "data_node_config",
    "quote_path",
    "sentinel_config",
    "server_lines",
]

MIN_REPLICAS_MAX_LAG_S = 2

# Values go into redis.conf unquoted; restricting them avoids quoting rules entirely.
_TOKEN = re.compile(r"[A-Za-z0-9._-]+")


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is safe to write unquoted into a Redis config file.

    Raises ``ValueError`` unless it is non-empty and made of ``A-Z a-z 0-9 . _ -``.
    """
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{what} must match {_TOKEN.pattern}, got {value!r}")
    return value


def quote_path(path: Path) -> str:
    """``path`` as a double-quoted redis.conf argument.

    Raises ``ValueError`` for paths holding a quote, backslash or control character,
    which would need escaping.
    """
    text = str(path)
    if any(ch in text for ch in '"\\') or any(ord(ch) < 32 for ch in text):
        raise ValueError(f"unsupported character in path {text!r}")
    return f'"{text}"'


def server_lines(*, host: str, port: int, directory: Path) -> list[str]:
    """What every local Redis process starts with: listening on ``host``:``port`` (also
    the source address of its own connections), in the foreground, logging to stdout,
    with its files in ``directory``."""
    return [
        f"port {port}",
        f"bind {check_token(host, 'host')}",
        f"bind-source-addr {host}",
        "protected-mode no",
        "daemonize no",
        'logfile ""',
        f"dir {quote_path(directory)}",
    ]


def data_node_config(
    *,
    port: int,
    directory: Path,
    password: str,
    replica_of: tuple[str, int] | None,
    host: str = "127.0.0.1",
) -> str:
    """redis.conf for one data node on ``host``:``port`` (also the source address of its
    own connections, so each node can have its own loopback address).

    Counters are durable: an append-only file, fsynced every second, so a master restarted
    before Sentinel reacts comes back with its counters (and its replicas, which resync
    from it, keep them) instead of empty. A master that has lost contact with every replica
    for more than ``MIN_REPLICAS_MAX_LAG_S`` refuses writes (NOREPLICAS), which bounds what
    an isolated old master can accept during a partition.
    ``masterauth`` equals ``requirepass`` on every node, so whichever node Sentinel
    promotes, the others can replicate from it and clients keep one password.
    ``replica_of`` is the master to follow at boot, ``None`` for a master.
    """
    lines = [
        *server_lines(host=host, port=port, directory=directory),
        'save ""',
        "appendonly yes",
        "appendfsync everysec",
        "min-replicas-to-write 1",
        # Replicas acknowledge every second; two missed acknowledgements isolate the master.
        f"min-replicas-max-lag {MIN_REPLICAS_MAX_LAG_S}",
        # The default 5 s delay batches replicas into one full sync; ours are few and
        # tests wait on every resync.
        "repl-diskless-sync-delay 0",
        f"requirepass {check_token(password, 'password')}",
        f"masterauth {password}",
    ]
    if replica_of is not None:
        master_host, master_port = replica_of
        lines.append(f"replicaof {master_host} {master_port}")
    return "\n".join(lines) + "\n"


def sentinel_config(
    *,
    port: int,
    directory: Path,
    master_name: str,
    master_address: tuple[str, int],
    password: str,
    down_after_ms: int,
    failover_timeout_ms: int,
    quorum: int = 2,
    sentinel_password: str | None = None,
    host: str = "127.0.0.1",
) -> str:
    """sentinel.conf for one Sentinel on ``host``:``port`` watching one master.

    Each Sentinel needs its own copy: Sentinel writes its generated ID and what it
    learns into the file, and Sentinels sharing an ID ignore each other. With
    ``sentinel_password`` the Sentinel requires it from clients and uses it towards the
    other Sentinels.
    """
    name = check_token(master_name, "master name")
    master_host, master_port = master_address
    lines = [
        *server_lines(host=host, port=port, directory=directory),
        f"sentinel monitor {name} {master_host} {master_port} {quorum}",
        f"sentinel auth-pass {name} {check_token(password, 'password')}",
        f"sentinel down-after-milliseconds {name} {down_after_ms}",
        f"sentinel failover-timeout {name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {name} 1",
    ]
    if sentinel_password is not None:
        lines.append(f"requirepass {check_token(sentinel_password, 'sentinel password')}")
    return "\n".join(lines) + "\n"
