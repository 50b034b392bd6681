"""A real Redis Cluster on loopback: three primaries, three replicas (or as many as asked).

Each node is a ``redis-server`` with ``cluster-enabled yes``; ``redis-cli --cluster create
... --cluster-replicas 1`` then assigns the slots and pairs every primary with a replica.
``redis-cli`` refuses fewer than three primaries, so a smaller cluster (the bench's one
primary) is put together with the commands it would send: ``CLUSTER ADDSLOTSRANGE``,
``CLUSTER MEET`` and ``CLUSTER REPLICATE``.
All processes are children of this one, listen on free 127.0.0.1 ports (the cluster bus
too, via ``cluster-port``), keep their files under one working directory and are stopped by
PID. Every file holding the password is readable by its owner only, and the password reaches
``redis-cli`` through ``REDISCLI_AUTH``, never its command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot as crc_slot

from devstack.errors import DevstackError, UnknownNodeError
from devstack.lifecycle import StopsOnExit
from devstack.ports import free_ports
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_tcp
from devstack.redis_config import check_token, server_lines
from devstack.redis_probes import Address, connect
from devstack.waiting import wait_until

__all__ = ["ClusterNode", "RedisCluster", "cluster_node_config", "key_slot"]

_HOST = "127.0.0.1"
_PRIMARIES = 3
_SLOTS = 16384
_PRIVATE_UMASK = 0o077  # nodes.conf and CONFIG REWRITE keep the password private too


def cluster_node_config(
    *, port: int, bus_port: int, directory: Path, password: str, node_timeout_ms: int
) -> str:
    """redis.conf for one cluster node on 127.0.0.1.

    ``cluster-require-full-coverage no``: while one primary's slots wait for its replica to
    take over, the other primaries keep deciding their own keys (the limiter's failure
    mode covers only the keys of the lost slots). No ``min-replicas-to-write``: a promoted
    replica has no replica of its own until the old primary returns, and must still write.
    """
    lines = [
        *server_lines(host=_HOST, port=port, directory=directory),
        'save ""',
        "appendonly yes",
        "appendfsync everysec",
        "cluster-enabled yes",
        f"cluster-port {bus_port}",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {node_timeout_ms}",
        "cluster-require-full-coverage no",
        "repl-diskless-sync-delay 0",
        f"requirepass {check_token(password, 'password')}",
        f"masterauth {password}",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class ClusterNode:
    """One cluster node: where it listens, its bus port, its config and its process
    (replaced when restarted)."""

    name: str
    address: Address
    bus_port: int
    config_path: Path
    process: ManagedProcess


class RedisCluster(StopsOnExit):
    """Start, inspect, break and stop a Redis Cluster of ``primaries`` primaries (default
    3), each with ``replicas`` replicas (default 1): six nodes by default.

    Nothing runs until ``start()`` (or entering the ``with`` block). Every node requires
    ``password`` (default: a random one). ``node_timeout_ms`` is ``cluster-node-timeout``:
    how long a silent primary takes to be declared failed. ``startup_timeout`` bounds
    ``start()`` and is the default deadline of the waiting methods, in seconds.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        node_timeout_ms: int = 1000,
        startup_timeout: float = 60.0,
        redis_server: str = "redis-server",
        redis_cli: str = "redis-cli",
        primaries: int = _PRIMARIES,
        replicas: int = 1,
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError(f"need at least 1 primary and 0 replicas, got {primaries}, {replicas}")
        self._primaries = primaries
        self._replicas = replicas
        self._workdir = workdir
        self._password = check_token(password or secrets.token_hex(16), "password")
        self._node_timeout_ms = node_timeout_ms
        self._timeout = startup_timeout
        self._redis_server = redis_server
        self._redis_cli = shutil.which(redis_cli) or redis_cli
        self._group = ProcessGroup(workdir / "logs")
        self._nodes: list[ClusterNode] = []

    def __enter__(self) -> RedisCluster:
        if not self._nodes:
            self.start()
        return self

    @property
    def password(self) -> str:
        """The password of every node (``requirepass`` and ``masterauth``)."""
        return self._password

    @property
    def password_file(self) -> Path:
        """A file (mode 0600, written at start) holding ``password`` and nothing else."""
        return self._workdir / "redis-password"

    @property
    def nodes(self) -> tuple[ClusterNode, ...]:
        """Every node in start order (the primaries first); empty before ``start()``."""
        return tuple(self._nodes)

    def nodes_env(self) -> str:
        """Every node's address as ``REDIS_CLUSTER_NODES`` expects: "host:port,..."."""
        return ",".join(f"{h}:{p}" for h, p in (node.address for node in self._nodes))

    def start(self) -> None:
        """Start the nodes, create the cluster, and return once every live node reports
        ``cluster_state:ok`` with all slots assigned, the primaries asked for, each with its
        replicas' links up. On failure everything started is stopped and the error
        (``DevstackError`` or ``OSError``) propagates."""
        if self._nodes:
            raise DevstackError("cluster already started")
        try:
            self._launch()
            self._create()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate every node this cluster started; safe to call repeatedly."""
        self._group.stop()

    def node_for(self, address: Address) -> ClusterNode:
        """The node at ``address``; ``UnknownNodeError`` if none listens there."""
        for node in self._nodes:
            if node.address == tuple(address):
                return node
        raise UnknownNodeError(f"no cluster node at {address}")

    def client(self, address: Address) -> redis.Redis:
        """A sync client (``str`` replies, 1 s timeouts, no redirects followed) for one
        node; close it after use."""
        return connect(address, self._password)

    def live_nodes(self) -> list[ClusterNode]:
        return [node for node in self._nodes if node.process.is_running()]

    def slot_owners(self) -> dict[int, Address]:
        """Slot -> primary address, as the first live node that answers sees it."""
        errors: list[str] = []
        for node in self.live_nodes():
            try:
                with self.client(node.address) as client:
                    reply = client.execute_command("CLUSTER", "SLOTS")
            except redis.RedisError as exc:
                errors.append(f"{node.address}: {exc}")
                continue
            return _owners(reply)
        raise DevstackError("no cluster node answered CLUSTER SLOTS: " + "; ".join(errors))

    def primaries(self) -> list[Address]:
        """The addresses owning slots, sorted."""
        return sorted(set(self.slot_owners().values()))

    def owner_of(self, key: str) -> Address:
        """The primary serving ``key``'s slot."""
        return self.slot_owners()[key_slot(key)]

    def kill_primary(self, address: Address | None = None) -> Address:
        """SIGKILL a primary (``address``, or the first one); return the address it served."""
        target = address or self.primaries()[0]
        if target not in self.primaries():
            raise DevstackError(f"{target} is not a primary")
        self.node_for(target).process.kill()
        return target

    def wait_for_promotion(self, old: Address, timeout: float | None = None) -> Address:
        """Wait until every live node names one other primary for the slots ``old`` served
        and that node says ``ROLE`` master. Returns its address. Raises
        ``DeadlineExceededError`` after ``timeout`` seconds (default: the startup timeout)."""
        slot = next(s for s, owner in self.slot_owners().items() if owner == tuple(old))

        def promoted() -> Address | None:
            seen: set[Address] = set()
            for node in self.live_nodes():
                with self.client(node.address) as client:
                    seen.add(_owners(client.execute_command("CLUSTER", "SLOTS"))[slot])
            if len(seen) != 1:
                return None
            new = seen.pop()
            if new == tuple(old):
                return None
            with self.client(new) as client:
                return new if str(client.role()[0]) == "master" else None

        return wait_until(
            promoted,
            timeout=self._timeout if timeout is None else timeout,
            waiting_for=f"a replica of {old} to be promoted and known to every node",
            retry_on=(redis.RedisError, KeyError),
        )

    def move_slot(self, slot: int, target: Address, timeout: float | None = None) -> Address:
        """Reshard ``slot`` to the primary ``target``, keys included (the documented
        IMPORTING / MIGRATING / MIGRATE / SETSLOT NODE sequence); return the old owner.
        Returns once every live node names ``target`` for it."""
        source = self.slot_owners()[slot]
        if source == tuple(target):
            return source
        with self.client(source) as src, self.client(target) as dst:
            source_id = str(src.execute_command("CLUSTER", "MYID"))
            target_id = str(dst.execute_command("CLUSTER", "MYID"))
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command(
                    "MIGRATE", *target, "", 0, 5000, "AUTH", self._password, "KEYS", *keys
                )
            for client in (dst, src):
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for address in self.primaries():  # replicas learn it from their primaries
            if address not in (tuple(source), tuple(target)):
                with self.client(address) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

        def everywhere() -> bool | None:
            for node in self.live_nodes():
                with self.client(node.address) as client:
                    if _owners(client.execute_command("CLUSTER", "SLOTS")).get(slot) != target:
                        return None
            return True

        wait_until(
            everywhere,
            timeout=self._timeout if timeout is None else timeout,
            waiting_for=f"every node to name {target} for slot {slot}",
            retry_on=(redis.RedisError,),
        )
        return source

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Return once every live node reports ``cluster_state:ok``, all slots assigned,
        as many primaries as asked for, and every live replica's link up."""

        def healthy() -> bool | None:
            for node in self.live_nodes():
                with self.client(node.address) as client:
                    info = _fields(str(client.execute_command("CLUSTER", "INFO")))
                    if info.get("cluster_state") != "ok":
                        return None
                    if int(info.get("cluster_slots_assigned", 0)) != _SLOTS:
                        return None
                    replication = client.info("replication")
                    if replication.get("role") == "slave" and (
                        replication.get("master_link_status") != "up"
                    ):
                        return None
            return True if len(self.primaries()) == self._primaries else None

        wait_until(
            healthy,
            timeout=self._timeout if timeout is None else timeout,
            waiting_for="the cluster to report state ok with every slot served",
            retry_on=(redis.RedisError, DevstackError),
            watch=[node.process for node in self.live_nodes()],
        )

    def _launch(self) -> None:
        count = self._primaries * (1 + self._replicas)
        ports = free_ports(2 * count)
        self._workdir.mkdir(parents=True, exist_ok=True)
        _write_private(self.password_file, self._password)
        for index in range(count):
            name = f"cluster-{index + 1}"
            port, bus_port = ports[2 * index], ports[2 * index + 1]
            directory = self._workdir / name
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            config_path = directory / "redis.conf"
            text = cluster_node_config(
                port=port,
                bus_port=bus_port,
                directory=directory,
                password=self._password,
                node_timeout_ms=self._node_timeout_ms,
            )
            _write_private(config_path, text)
            process = self._group.start(
                name, [self._redis_server, str(config_path)], umask=_PRIVATE_UMASK
            )
            self._nodes.append(ClusterNode(name, (_HOST, port), bus_port, config_path, process))
        for node in self._nodes:
            wait_for_tcp(*node.address, self._timeout, node.process)

    def _create(self) -> None:
        if self._primaries < _PRIMARIES:
            self._assemble()
            return
        addresses = [f"{h}:{p}" for h, p in (node.address for node in self._nodes)]
        argv = [self._redis_cli, "--cluster", "create", *addresses]
        argv += ["--cluster-replicas", str(self._replicas), "--cluster-yes"]
        deadline = time.monotonic() + self._timeout
        result = subprocess.run(
            argv,
            env={**os.environ, "REDISCLI_AUTH": self._password},
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        if result.returncode != 0:
            raise DevstackError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    def _assemble(self) -> None:
        """What ``redis-cli --cluster create`` does, for fewer primaries than it accepts:
        split the slots among the first ``primaries`` nodes, introduce every node to the
        first, then make each remaining node a replica of its primary."""
        primaries, replicas = self._nodes[: self._primaries], self._nodes[self._primaries :]
        bounds = [i * _SLOTS // len(primaries) for i in range(len(primaries) + 1)]
        first = self._nodes[0]
        ids: dict[str, str] = {}
        for index, node in enumerate(self._nodes):
            with self.client(node.address) as client:
                ids[node.name] = str(client.execute_command("CLUSTER", "MYID"))
                if index < len(primaries):
                    low, high = bounds[index], bounds[index + 1] - 1
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
                if node is not first:
                    client.execute_command("CLUSTER", "MEET", *first.address, first.bus_port)

        def known_everywhere() -> bool | None:
            for node in self._nodes:
                with self.client(node.address) as client:
                    table = str(client.execute_command("CLUSTER", "NODES"))
                if any(node_id not in table for node_id in ids.values()) or "handshake" in table:
                    return None
            return True

        wait_until(
            known_everywhere,
            timeout=self._timeout,
            waiting_for="every cluster node to know every other",
            retry_on=(redis.RedisError,),
        )
        for index, node in enumerate(replicas):
            primary = primaries[index % len(primaries)]
            with self.client(node.address) as client:
                client.execute_command("CLUSTER", "REPLICATE", ids[primary.name])


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (CRC16 of its hash tag, or of the whole key)."""
    return int(crc_slot(key.encode()))


def _owners(reply: object) -> dict[int, Address]:
    """``CLUSTER SLOTS`` (raw reply) as slot -> primary address."""
    owners: dict[int, Address] = {}
    if not isinstance(reply, list):
        raise DevstackError(f"unexpected CLUSTER SLOTS reply {reply!r}")
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        address = (str(primary[0]), int(primary[1]))
        for slot in range(start, end + 1):
            owners[slot] = address
    return owners


def _fields(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, also when the file existed with another."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)
