"""Real processes for tests and local runs: ports, managed processes, a Redis Sentinel stack.

Import from here; the submodules are the implementation.
"""

from devstack.errors import (
    DeadlineExceededError,
    DevstackError,
    ProcessDiedError,
    UnknownNodeError,
)
from devstack.ports import free_port, free_ports
from devstack.processes import ManagedProcess, ProcessGroup, wait_for_tcp
from devstack.redis_probes import Address
from devstack.redis_topology import NodeHandle, RedisTopology
from devstack.waiting import wait_until

__all__ = [
    "Address",
    "DeadlineExceededError",
    "DevstackError",
    "ManagedProcess",
    "NodeHandle",
    "ProcessDiedError",
    "ProcessGroup",
    "RedisTopology",
    "UnknownNodeError",
    "free_port",
    "free_ports",
    "wait_for_tcp",
    "wait_until",
]
