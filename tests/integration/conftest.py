"""Real processes for the integration tests: a standalone Redis shared by the session and a
process group per test (stopped by PID afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import ProcessGroup, StandaloneRedis, start_redis

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
