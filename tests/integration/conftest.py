"""Real processes for the integration tests: a standalone Redis, limiters, clients."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from devstack import ManagedProcess, ProcessGroup, free_port, wait_for_tcp
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration


@dataclass
class StandaloneRedis:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


def start_redis(log_dir: Path, name: str = "redis") -> StandaloneRedis:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = ManagedProcess(
        name,
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(log_dir),
        ],
        log_dir=log_dir,
    )
    wait_for_tcp("127.0.0.1", port, timeout=15, process=process)
    return StandaloneRedis(process, port)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.process.terminate()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    with ProcessGroup(tmp_path / "logs") as group:
        yield group


@pytest.fixture
async def client_factory() -> AsyncIterator[list[LimiterClient]]:
    clients: list[LimiterClient] = []
    yield clients
    for client in clients:
        await client.close()
