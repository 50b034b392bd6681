"""The Redis layer of ``deploy/docker-compose.yml``, run without Docker: the same entrypoint
scripts (``deploy/redis/*.sh``) start a master, two replicas and three Sentinels on loopback,
everyone announcing a hostname as in compose. The Sentinels must find each other (each has
its own config file, hence its own ID), and fail over when the master dies."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from devstack import ProcessGroup, free_ports, wait_for_tcp, wait_until
from devstack.redis_probes import (
    Address,
    connect,
    role,
    sentinel_master_addr,
    sentinel_master_state,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-sentinel") is None,
        reason="redis-server / redis-sentinel not installed (make system-deps)",
    ),
]

SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "redis"
# Stands in for the compose service names: resolvable, and the same for every node, which
# the ports tell apart.
HOSTNAME = "localhost"
MASTER_NAME = "mymaster"


@dataclass(frozen=True)
class ComposeRedis:
    password: str
    sentinel_password: str
    group: ProcessGroup
    data_ports: tuple[int, int, int]
    sentinel_ports: tuple[int, int, int]

    def sentinel_views(self) -> set[Address | None]:
        seen = set()
        for port in self.sentinel_ports:
            with connect(("127.0.0.1", port), self.sentinel_password) as sentinel:
                seen.add(sentinel_master_addr(sentinel, MASTER_NAME))
        return seen


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeRedis]:
    root = tmp_path_factory.mktemp("compose-redis")
    password = secrets.token_hex(8)
    sentinel_password = secrets.token_hex(8)
    ports = free_ports(6)
    data_ports = (ports[0], ports[1], ports[2])
    sentinel_ports = (ports[3], ports[4], ports[5])
    with ProcessGroup(root / "logs") as group:
        for index, port in enumerate(data_ports):
            data_dir = root / f"redis-{index}"
            data_dir.mkdir()
            env = {
                "REDIS_PASSWORD": password,
                "REDIS_ANNOUNCE_HOST": HOSTNAME,
                "REDIS_REPLICA_OF": "" if index == 0 else HOSTNAME,
                "REDIS_PORT": str(port),
                "REDIS_MASTER_PORT": str(data_ports[0]),
                "DATA_DIR": str(data_dir),
            }
            process = group.start(f"redis-{index}", ["sh", str(SCRIPTS / "redis-node.sh")], env)
            wait_for_tcp("127.0.0.1", port, 15, process)
        for index, port in enumerate(sentinel_ports):
            data_dir = root / f"sentinel-{index}"
            data_dir.mkdir()
            env = {
                "REDIS_PASSWORD": password,
                "SENTINEL_PASSWORD": sentinel_password,
                "SENTINEL_ANNOUNCE_HOST": HOSTNAME,
                "REDIS_MASTER_HOST": HOSTNAME,
                "REDIS_MASTER_PORT": str(data_ports[0]),
                "SENTINEL_PORT": str(port),
                "SENTINEL_DOWN_AFTER_MS": "1000",
                "DATA_DIR": str(data_dir),
            }
            process = group.start(f"sentinel-{index}", ["sh", str(SCRIPTS / "sentinel.sh")], env)
            wait_for_tcp("127.0.0.1", port, 15, process)
        yield ComposeRedis(password, sentinel_password, group, data_ports, sentinel_ports)


def test_sentinels_find_each_other_and_every_replica(deployment: ComposeRedis) -> None:
    def formed() -> bool | None:
        for port in deployment.sentinel_ports:
            with connect(("127.0.0.1", port), deployment.sentinel_password) as sentinel:
                state = sentinel_master_state(sentinel, MASTER_NAME)
            if (state["num-slaves"], state["num-other-sentinels"]) != ("2", "2"):
                return None
        return True

    wait_until(
        formed,
        timeout=30,
        waiting_for="3 Sentinels (own IDs) to see 2 replicas and each other",
        retry_on=(redis.RedisError,),
        watch=deployment.group.processes,
    )
    assert deployment.sentinel_views() == {(HOSTNAME, deployment.data_ports[0])}
    # The config each Sentinel started from is its own, and it wrote its ID into it.
    ids = {
        line
        for process in deployment.group.processes
        if process.name.startswith("sentinel-")
        for line in (process.log_path.parent.parent / process.name / "sentinel.conf")
        .read_text()
        .splitlines()
        if line.startswith("sentinel myid")
    }
    assert len(ids) == 3


def test_sentinels_fail_over_to_a_replica_by_hostname(deployment: ComposeRedis) -> None:
    (master,) = (p for p in deployment.group.processes if p.name == "redis-0")
    master.kill()
    old = (HOSTNAME, deployment.data_ports[0])

    def promoted() -> Address | None:
        views = deployment.sentinel_views()
        if len(views) != 1:
            return None
        (new,) = views
        if new is None or new == old:
            return None
        with connect(("127.0.0.1", new[1]), deployment.password) as node:
            return new if role(node) == "master" else None

    new = wait_until(
        promoted,
        timeout=30,
        waiting_for="the Sentinels to agree on a promoted replica",
        retry_on=(redis.RedisError,),
    )
    assert new[0] == HOSTNAME
    assert new[1] in deployment.data_ports[1:]
