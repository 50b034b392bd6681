"""Real processes for the integration tests: a standalone Redis shared by the session and a
process group per test (stopped by PID afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from devstack import ProcessGroup, StandaloneRedis, free_port, start_redis
from devstack.limiter import start_limiter
from tests.integration.client import LimiterClient

LimiterOn = Callable[[str, str], LimiterClient]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneRedis]:
    workdir = tmp_path_factory.mktemp("redis")
    with ProcessGroup(workdir / "logs") as group:
        yield start_redis(group, workdir=workdir)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    with ProcessGroup(tmp_path / "logs") as group:
        yield group


@pytest.fixture
async def limiter_on(
    redis_server: StandaloneRedis, processes: ProcessGroup, tmp_path: Path
) -> AsyncIterator[LimiterOn]:
    """Starts a limiter process on a backend ("memory", or "redis" on ``redis_server``) serving
    the given policies YAML, and returns a client to it (closed after the test)."""
    clients: list[LimiterClient] = []

    def start(backend: str, policies: str) -> LimiterClient:
        name = f"limiter-{len(clients)}" if clients else "limiter"
        path = tmp_path / f"{name}.yaml"
        path.write_text(policies)
        env = {"LIMITER_POLICIES": str(path), "LIMITER_BACKEND": backend}
        if backend == "redis":
            env["REDIS_URL"] = redis_server.url
        node = start_limiter(processes, name, free_port(), env)
        clients.append(LimiterClient(node.address))
        return clients[-1]

    yield start
    for client in clients:
        await client.close()
