"""Free TCP ports on the loopback interface.

A port returned here was free when we looked; nothing stops another process taking it
before ours binds. Servers started on it fail fast in that case, and the harness reports
their log, so the race shows up as a clear error rather than a hang.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

__all__ = ["free_port", "free_ports"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that the kernel reported free just now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports on ``host`` that were free just now.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the
    same port twice. ``count`` of zero returns an empty list; a negative one raises
    ``ValueError``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
