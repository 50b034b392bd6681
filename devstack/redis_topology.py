"""A real Redis Sentinel deployment on loopback: one master, two replicas, three Sentinels.

Built for integration tests and local runs that need genuine failover behaviour. All
processes are children of this one, listen on free 127.0.0.1 ports, keep their files
under one working directory, and are stopped by PID. Every file holding a password (the
configs, also as Redis rewrites them, and the password files) is readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from devstack.errors import DeadlineExceededError, DevstackError, UnknownNodeError
from devstack.lifecycle import StopsOnExit
from devstack.ports import free_ports
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_tcp
from devstack.redis_config import check_token, data_node_config, sentinel_config
from devstack.redis_probes import (
    Address,
    connect,
    master_link_up,
    role,
    sentinel_failover,
    sentinel_master_addr,
    sentinel_master_state,
)
from devstack.waiting import wait_until

__all__ = ["NodeHandle", "RedisTopology"]

_HOST = "127.0.0.1"
_REPLICAS = 2
_SENTINELS = 3
_QUORUM = 2
_BARRIER_CHANNEL = "__devstack__:replication-barrier"
# Redis and Sentinel rewrite their own config (CONFIG REWRITE, every failover) with mode
# 0644 & ~umask; with this umask the rewritten files keep the password private too.
_PRIVATE_UMASK = 0o077


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, also when the file existed with another."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)


@dataclass
class NodeHandle:
    """One data node or Sentinel: where it listens and the process serving it.

    ``process`` is replaced when the node is restarted; ``config_path`` is the file the
    server was started with (and which Redis/Sentinel may rewrite).
    """

    name: str
    address: Address
    config_path: Path
    process: ManagedProcess


class RedisTopology(StopsOnExit):
    """Start, inspect, break and stop a Sentinel-managed Redis deployment.

    Nothing runs until ``start()`` (or entering the ``with`` block). ``password`` is
    required by every data node and ``sentinel_password``, if given, by every Sentinel;
    both default to what their names say (a random password, no Sentinel password).
    ``down_after_ms`` and ``failover_timeout_ms`` go to each Sentinel's config.
    ``startup_timeout`` bounds ``start()`` and is the default deadline of the other
    waiting methods, in seconds. ``ports``: master, replica 1, replica 2, sentinel 1..3
    (0 or empty: any free port); ``hosts``: their listen (and source) addresses in the
    same order (empty: all on 127.0.0.1), e.g. one loopback address each for partition
    tests.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        master_name: str = "mymaster",
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        startup_timeout: float = 30.0,
        redis_server: str = "redis-server",
        redis_sentinel: str = "redis-sentinel",
        ports: Sequence[int] = (),
        hosts: Sequence[str] = (),
    ) -> None:
        if ports and len(ports) != 1 + _REPLICAS + _SENTINELS:
            raise ValueError(
                f"ports: give {1 + _REPLICAS + _SENTINELS} (master, replicas, sentinels)"
            )
        if hosts and len(hosts) != 1 + _REPLICAS + _SENTINELS:
            raise ValueError(
                f"hosts: give {1 + _REPLICAS + _SENTINELS} (master, replicas, sentinels)"
            )
        self._ports = tuple(ports)
        self._hosts = tuple(hosts) or (_HOST,) * (1 + _REPLICAS + _SENTINELS)
        self._workdir = workdir
        self._master_name = check_token(master_name, "master name")
        self._password = check_token(password or secrets.token_hex(16), "password")
        self._sentinel_password = sentinel_password
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        self._timeout = startup_timeout
        self._redis_server = redis_server
        self._redis_sentinel = redis_sentinel
        self._group = ProcessGroup(workdir / "logs")
        self._data_nodes: list[NodeHandle] = []
        self._sentinels: list[NodeHandle] = []

    def __enter__(self) -> RedisTopology:
        if not self._data_nodes:
            self.start()
        return self

    @property
    def password(self) -> str:
        """The password of every data node (``requirepass`` and ``masterauth``)."""
        return self._password

    @property
    def sentinel_password(self) -> str | None:
        """The password Sentinels require, ``None`` if they require none."""
        return self._sentinel_password

    @property
    def password_file(self) -> Path:
        """A file (mode 0600, written at start) holding ``password`` and nothing else, for
        ``REDISCLI_AUTH="$(cat FILE)" redis-cli ...`` (no password on a command line)."""
        return self._workdir / "redis-password"

    @property
    def sentinel_password_file(self) -> Path | None:
        """As ``password_file``, for ``sentinel_password``; ``None`` without one."""
        if self._sentinel_password is None:
            return None
        return self._workdir / "sentinel-password"

    @property
    def master_name(self) -> str:
        """The name the Sentinels monitor the master under."""
        return self._master_name

    @property
    def data_nodes(self) -> tuple[NodeHandle, ...]:
        """The three data nodes; the first was master at start. Empty before ``start()``."""
        return tuple(self._data_nodes)

    @property
    def sentinels(self) -> tuple[NodeHandle, ...]:
        """The three Sentinels. Empty before ``start()``."""
        return tuple(self._sentinels)

    @property
    def sentinel_addresses(self) -> list[Address]:
        """Every Sentinel's (host, port), in start order."""
        return [node.address for node in self._sentinels]

    def sentinel_hosts_env(self) -> str:
        """Sentinel addresses as ``SENTINEL_HOSTS`` expects: "host:port,host:port,..."."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    def start(self) -> None:
        """Start every process and return once the deployment is fully formed.

        That is: the master answers PING, both replicas report their link up, and every
        Sentinel sees two replicas and two other Sentinels. On any failure everything
        started is stopped again and the error (``DevstackError`` or ``OSError``)
        propagates. Raises ``DevstackError`` if already started.
        """
        if self._data_nodes:
            raise DevstackError("topology already started")
        try:
            self._launch()
            wait_until(
                self._fully_formed,
                timeout=self._timeout,
                waiting_for="master, replicas and Sentinels to find each other",
                retry_on=(redis.RedisError,),
                watch=[node.process for node in (*self._data_nodes, *self._sentinels)],
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate every process this topology started; safe to call repeatedly."""
        self._group.stop()

    def node_for(self, address: Address) -> NodeHandle:
        """The data node listening on ``address``; ``UnknownNodeError`` if none does."""
        for node in self._data_nodes:
            if node.address == tuple(address):
                return node
        raise UnknownNodeError(f"no data node at {address}")

    def client(self, address: Address) -> redis.Redis:
        """A sync client (``str`` replies, 1 s timeouts) for a data node; close it after use."""
        return connect(address, self._password)

    def sentinel_client(self, address: Address) -> redis.Redis:
        """A sync client for a Sentinel, like ``client()``; close it after use."""
        return connect(address, self._sentinel_password)

    def current_master(self) -> Address:
        """The master address according to the first Sentinel that answers.

        Raises ``DevstackError`` if no Sentinel answers with an address.
        """
        errors: list[str] = []
        for address in self.sentinel_addresses:
            try:
                with self.sentinel_client(address) as sentinel:
                    master = sentinel_master_addr(sentinel, self._master_name)
            except redis.RedisError as exc:
                errors.append(f"{address}: {exc}")
                continue
            if master is not None:
                return master
            errors.append(f"{address}: does not know {self._master_name!r}")
        raise DevstackError("no Sentinel reported a master: " + "; ".join(errors))

    def kill_master(self) -> Address:
        """SIGKILL the current master's process; return the address it served."""
        master = self.current_master()
        self.node_for(master).process.kill()
        return master

    def wait_for_master_change(self, old: Address, timeout: float | None = None) -> Address:
        """Wait until every Sentinel names the same master other than ``old``.

        Also waits until that node answers ``ROLE`` as master. Returns its address.
        Raises ``DeadlineExceededError`` after ``timeout`` seconds (default: the startup
        timeout) and ``ProcessDiedError`` if a Sentinel exits meanwhile.
        """

        def switched() -> Address | None:
            seen = set()
            for address in self.sentinel_addresses:
                with self.sentinel_client(address) as sentinel:
                    seen.add(sentinel_master_addr(sentinel, self._master_name))
            if len(seen) != 1:
                return None
            new = seen.pop()
            if new is None or new == tuple(old):
                return None
            with self.client(new) as node:
                return new if role(node) == "master" else None

        return wait_until(
            switched,
            timeout=self._timeout if timeout is None else timeout,
            waiting_for=f"all Sentinels to agree on a master other than {old}",
            retry_on=(redis.RedisError,),
            watch=[node.process for node in self._sentinels],
        )

    def planned_failover(self, timeout: float | None = None) -> Address:
        """Ask a Sentinel to fail over now; return the new master once all agree on it.

        Retries while Sentinel refuses because no replica is eligible yet or a failover
        is in progress. Raises ``DeadlineExceededError`` after ``timeout`` seconds
        (default: the startup timeout) in total.
        """
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        old = self.current_master()

        def accepted() -> bool | None:
            with self.sentinel_client(self.sentinel_addresses[0]) as sentinel:
                try:
                    sentinel_failover(sentinel, self._master_name)
                except redis.ResponseError as exc:
                    if "NOGOODSLAVE" in str(exc) or "INPROG" in str(exc):
                        return None
                    raise
            return True

        wait_until(
            accepted,
            timeout=deadline - time.monotonic(),
            waiting_for=f"Sentinel to accept a failover of {self._master_name!r}",
            retry_on=(redis.ConnectionError, redis.TimeoutError),
        )
        return self.wait_for_master_change(old, max(0.0, deadline - time.monotonic()))

    def restart_node(self, address: Address, timeout: float | None = None) -> NodeHandle:
        """Start the stopped data node at ``address`` again, with its own config file.

        Returns once it plays the role the Sentinels give it: master if they still name
        it, otherwise a replica of their master with the link up. It comes back with
        the data of its append-only file and, after a failover, first boots as a master
        until a Sentinel converts it (several seconds; the link may drop once more while it
        resyncs). Raises
        ``DevstackError`` if the node is still running.
        """
        node = self.node_for(address)
        if node.process.is_running():
            raise DevstackError(f"data node {node.name} at {address} is still running")
        budget = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        node.process = self._start_process(node.name, node.config_path)
        wait_for_tcp(address[0], address[1], budget, node.process)

        def settled() -> bool | None:
            master = self.current_master()
            with self.client(address) as client:
                if master == address:
                    return True if role(client) == "master" else None
                return True if master_link_up(client, master) else None

        wait_until(
            settled,
            timeout=max(0.0, deadline - time.monotonic()),
            waiting_for=f"restarted {node.name} to take the role the Sentinels assign",
            retry_on=(redis.RedisError, DevstackError),
            watch=[node.process],
        )
        return node

    def wait_replicated(self, timeout: float = 5.0, replicas: int = _REPLICAS) -> int:
        """Return once ``replicas`` replicas hold every write the master has accepted.

        Writes from any connection count: ``WAIT`` only covers its own connection's
        writes (on recent Redis versions), so a ``PUBLISH``, which Redis replicates
        without touching the keyspace, is sent on that connection first. Returns how
        many replicas acknowledged. Raises ``DeadlineExceededError`` if fewer did
        within ``timeout`` seconds.
        """
        master = self.current_master()
        with connect(master, self._password, timeout=timeout + 1.0, single_connection=True) as c:
            c.publish(_BARRIER_CHANNEL, "")
            acked = int(c.wait(replicas, max(1, int(timeout * 1000))))
        if acked < replicas:
            raise DeadlineExceededError(
                f"{replicas} replicas of {master} to acknowledge writes",
                timeout,
                f"only {acked} acknowledged",
            )
        return acked

    def _launch(self) -> None:
        wanted = list(self._ports) or [0] * (1 + _REPLICAS + _SENTINELS)
        free = iter(free_ports(wanted.count(0)))
        ports = [port or next(free) for port in wanted]
        hosts = self._hosts
        master: Address = (hosts[0], ports[0])
        self._workdir.mkdir(parents=True, exist_ok=True)
        _write_private(self.password_file, self._password)
        if self.sentinel_password_file is not None and self._sentinel_password is not None:
            _write_private(self.sentinel_password_file, self._sentinel_password)
        for index, port in enumerate(ports[: 1 + _REPLICAS]):
            name = f"redis-{index + 1}"
            text = data_node_config(
                port=port,
                directory=self._node_dir(name),
                password=self._password,
                replica_of=None if index == 0 else master,
                host=hosts[index],
            )
            self._data_nodes.append(self._spawn(name, (hosts[index], port), "redis.conf", text))
        for index, port in enumerate(ports[1 + _REPLICAS :]):
            name = f"sentinel-{index + 1}"
            text = sentinel_config(
                port=port,
                directory=self._node_dir(name),
                master_name=self._master_name,
                master_address=master,
                password=self._password,
                down_after_ms=self._down_after_ms,
                failover_timeout_ms=self._failover_timeout_ms,
                quorum=_QUORUM,
                sentinel_password=self._sentinel_password,
                host=hosts[1 + _REPLICAS + index],
            )
            address = (hosts[1 + _REPLICAS + index], port)
            self._sentinels.append(self._spawn(name, address, "sentinel.conf", text))

    def _node_dir(self, name: str) -> Path:
        directory = self._workdir / name
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        return directory

    def _spawn(self, name: str, address: Address, config_name: str, text: str) -> NodeHandle:
        config_path = self._workdir / name / config_name
        _write_private(config_path, text)
        process = self._start_process(name, config_path)
        wait_for_tcp(address[0], address[1], self._timeout, process)
        return NodeHandle(name, address, config_path, process)

    def _start_process(self, name: str, config_path: Path) -> ManagedProcess:
        sentinel = config_path.name == "sentinel.conf"
        binary = self._redis_sentinel if sentinel else self._redis_server
        return self._group.start(name, [binary, str(config_path)], umask=_PRIVATE_UMASK)

    def _fully_formed(self) -> bool | None:
        master, *replicas = (node.address for node in self._data_nodes)
        with self.client(master) as client:
            client.ping()
        for address in replicas:
            with self.client(address) as client:
                if not master_link_up(client, master):
                    return None
        for address in self.sentinel_addresses:
            with self.sentinel_client(address) as sentinel:
                state = sentinel_master_state(sentinel, self._master_name)
            if int(state["num-slaves"]) != _REPLICAS:
                return None
            if int(state["num-other-sentinels"]) != _SENTINELS - 1:
                return None
        return True
