"""A standalone ``redis-server`` on a loopback port: no disk, no password, ready on return."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import redis

from devstack.ports import free_port
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.waiting import wait_until

__all__ = ["StandaloneRedis", "start_redis"]


@dataclass(frozen=True)
class StandaloneRedis:
    """A running ``redis-server`` and where it listens."""

    process: ManagedProcess
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, *, decode_responses: bool = False) -> redis.Redis:
        """A new sync client (5 s socket timeout); the caller closes it."""
        return redis.Redis(
            host=self.host, port=self.port, socket_timeout=5, decode_responses=decode_responses
        )


def start_redis(
    group: ProcessGroup,
    name: str = "redis",
    *,
    workdir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 20.0,
) -> StandaloneRedis:
    """Start ``redis-server`` (``save ""``, no AOF, files in ``workdir``) in ``group`` on
    ``port`` (0: a free one); return once it answers PING. Raises ``ProcessDiedError`` or
    ``DeadlineExceededError`` with its log tail."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]
    process = group.start(name, [*argv, "--dir", str(workdir)])
    server = StandaloneRedis(process, host, port)

    def answers() -> bool:
        with server.client() as client:
            return bool(client.ping())

    wait_until(
        answers,
        timeout=timeout,
        waiting_for=f"redis-server {name} on {host}:{port} to answer PING",
        retry_on=(redis.RedisError,),
        watch=(process,),
    )
    return server
