"""Integration tests: a real master, two replicas and three Sentinels on loopback."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack import Address, DeadlineExceededError, RedisTopology, free_ports, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-sentinel") is None,
        reason="redis-server / redis-sentinel not installed",
    ),
]


def _started(
    workdir: Path, sentinel_password: str | None = None, ports: tuple[int, ...] = ()
) -> Iterator[RedisTopology]:
    topology = RedisTopology(
        workdir, down_after_ms=1000, sentinel_password=sentinel_password, ports=ports
    )
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[RedisTopology]:
    yield from _started(tmp_path)


@pytest.fixture
def chosen_ports() -> tuple[int, ...]:
    return tuple(free_ports(6))


@pytest.fixture
def guarded_topology(tmp_path: Path, chosen_ports: tuple[int, ...]) -> Iterator[RedisTopology]:
    """Sentinels with a password, every port chosen by the caller."""
    yield from _started(tmp_path, sentinel_password="sentinel-secret", ports=chosen_ports)


def test_explicit_ports_are_used(
    guarded_topology: RedisTopology, chosen_ports: tuple[int, ...]
) -> None:
    data_ports = tuple(node.address[1] for node in guarded_topology.data_nodes)
    sentinel_ports = tuple(port for _, port in guarded_topology.sentinel_addresses)
    assert data_ports + sentinel_ports == chosen_ports


def _ttl(topology: RedisTopology, address: Address, key: str) -> int:
    with topology.client(address) as client:
        return int(client.ttl(key))


def _get(topology: RedisTopology, address: Address, key: str) -> str | None:
    with topology.client(address) as client:
        value = client.get(key)
    return None if value is None else str(value)


def _is_replica_of(topology: RedisTopology, address: Address, master: Address) -> bool | None:
    with topology.client(address) as client:
        info = client.info("replication")
    linked = (
        info["role"] == "slave"
        and (info["master_host"], int(info["master_port"])) == master
        and info["master_link_status"] == "up"
    )
    return True if linked else None


def test_start_forms_the_deployment(topology: RedisTopology) -> None:
    master = topology.current_master()
    assert master == topology.data_nodes[0].address
    assert len(topology.sentinel_addresses) == 3
    assert topology.sentinel_hosts_env() == ",".join(
        f"{host}:{port}" for host, port in topology.sentinel_addresses
    )
    for node in topology.data_nodes[1:]:
        assert _is_replica_of(topology, node.address, master)
    for node in topology.data_nodes:
        with topology.client(node.address) as client:
            assert client.config_get("masterauth") == {"masterauth": topology.password}
        host, port = node.address
        with (
            redis.Redis(host, port, retry=Retry(NoBackoff(), 0)) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()


def test_write_survives_master_kill_and_replicas_stay_read_only(
    topology: RedisTopology,
) -> None:
    master = topology.current_master()
    with topology.client(master) as client:
        client.set("greeting", "hello", ex=300)
    topology.wait_replicated(timeout=5.0)
    replica = topology.data_nodes[1].address
    assert _get(topology, replica, "greeting") == "hello"
    assert 0 < _ttl(topology, replica, "greeting") <= 300

    killed = topology.kill_master()
    assert killed == master
    assert not topology.node_for(killed).process.is_running()

    new_master = topology.wait_for_master_change(killed, timeout=30.0)
    assert new_master != killed
    assert topology.current_master() == new_master
    assert _get(topology, new_master, "greeting") == "hello"
    assert 0 < _ttl(topology, new_master, "greeting") <= 300

    (other_replica,) = (
        node.address for node in topology.data_nodes if node.address not in (killed, new_master)
    )
    with topology.client(other_replica) as client, pytest.raises(redis.ReadOnlyError):
        client.set("greeting", "overwritten")
    with topology.client(new_master) as client:
        assert client.set("after-failover", "yes")


def test_restarted_old_master_rejoins_as_replica(topology: RedisTopology) -> None:
    with topology.client(topology.current_master()) as client:
        client.set("kept", "1")
    topology.wait_replicated(timeout=5.0)
    killed = topology.kill_master()
    new_master = topology.wait_for_master_change(killed, timeout=30.0)

    node = topology.restart_node(killed, timeout=60.0)

    assert node.process.is_running()
    # It boots from its own AOF as a master until Sentinel converts it (Sentinel waits a few
    # of its 2 s announce periods first); the resync that follows can drop the link once (the
    # replica rewrites its AOF after loading). Alone this takes 10-20 s; under the full
    # suite's load it once took more than 30.
    assert wait_until(
        lambda: _is_replica_of(topology, killed, new_master),
        timeout=60.0,
        waiting_for="the old master to replicate from the new one",
        retry_on=(redis.RedisError,),
    )
    assert topology.current_master() == new_master
    assert _get(topology, killed, "kept") == "1"
    topology.wait_replicated(timeout=5.0)


def test_planned_failover_with_sentinel_password(guarded_topology: RedisTopology) -> None:
    topology = guarded_topology
    with (
        redis.Redis(*topology.sentinel_addresses[0], retry=Retry(NoBackoff(), 0)) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.ping()
    old = topology.current_master()
    with topology.client(old) as client:
        client.set("before", "planned")
    topology.wait_replicated(timeout=5.0)

    new = topology.planned_failover(timeout=30.0)

    assert new != old
    assert new in [node.address for node in topology.data_nodes]
    assert _get(topology, new, "before") == "planned"
    (bystander,) = (node.address for node in topology.data_nodes if node.address not in (old, new))
    wait_until(
        lambda: _is_replica_of(topology, bystander, new),
        timeout=30.0,
        waiting_for="the remaining replica to follow the new master",
        retry_on=(redis.RedisError,),
    )
    with topology.client(new) as client:
        assert client.set("after", "planned")
    assert topology.wait_replicated(timeout=5.0, replicas=1) >= 1
    assert _get(topology, bystander, "after") == "planned"


def test_wait_replicated_reports_a_lagging_replica(topology: RedisTopology) -> None:
    lagging = topology.data_nodes[1].process
    lagging.signal(signal.SIGSTOP)
    try:
        # Written on another connection than the one wait_replicated uses.
        with topology.client(topology.current_master()) as client:
            client.set("unacknowledged", "1")
        with pytest.raises(DeadlineExceededError):
            topology.wait_replicated(timeout=0.5)
        assert topology.wait_replicated(timeout=0.5, replicas=1) >= 1
    finally:
        lagging.signal(signal.SIGCONT)
    assert topology.wait_replicated(timeout=5.0) == 2
