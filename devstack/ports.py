"""Free TCP ports on the loopback interface, chosen where nothing else picks ports.

Ports come from below the kernel's ephemeral range (``ip_local_port_range``), so no
outgoing connection of any process on the machine (a replica dialling its master, a gRPC
client) can be given one as its local port between the moment we choose it and the moment
our server binds it; and this process never hands out the same port twice. A port returned
here was free when we looked; a server that still loses the race fails fast and the harness
reports its log.
"""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from pathlib import Path

__all__ = ["free_port", "free_ports", "port_range"]

_LOWEST = 10_000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def port_range() -> range:
    """Where ports are chosen: from 10000 up to the start of the ephemeral range."""
    try:
        ephemeral_start = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32_768
    return range(_LOWEST, max(ephemeral_start, _LOWEST + 1_000))


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free just now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports on ``host`` that were free just now, none handed
    out before by this process. ``count`` of zero returns an empty list; a negative one
    raises ``ValueError``; ``OSError`` when no free port is found."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    candidates = port_range()
    ports: list[int] = []
    with ExitStack() as stack:
        for _ in range(50 * count + 100):
            if len(ports) == count:
                break
            port = random.choice(candidates)
            if port in _handed_out:
                continue
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            ports.append(port)
    if len(ports) < count:
        raise OSError(f"no free TCP port found on {host} in {candidates}")
    return ports
