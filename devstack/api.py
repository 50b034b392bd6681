"""Starting the demo API (``python -m api``) as a real process."""

from __future__ import annotations

import http.client
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from devstack.processes import ManagedProcess, ProcessGroup
from devstack.waiting import wait_until

__all__ = ["ApiNode", "start_api", "wait_api"]


@dataclass(frozen=True)
class ApiNode:
    """A running API replica and where it listens."""

    process: ManagedProcess
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port``, as an Nginx upstream server."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8001``."""
        return f"http://{self.address}"

    def health_status(self, timeout: float = 1.0) -> int:
        """The status of ``GET /health`` (raises ``OSError`` when nothing answers)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status
        finally:
            connection.close()


def start_api(
    group: ProcessGroup,
    name: str,
    port: int,
    env: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
) -> ApiNode:
    """Start ``python -m api`` as replica ``name`` on ``host:port`` with ``env`` laid over
    ours; does not wait (see ``wait_api``). ``API_INSTANCE``, ``API_HOST`` and ``API_PORT``
    are set from the arguments unless ``env`` sets them."""
    process = group.start(
        name,
        [sys.executable, "-m", "api"],
        env={"API_INSTANCE": name, "API_HOST": host, "API_PORT": str(port), **env},
    )
    return ApiNode(process, host, port)


def wait_api(node: ApiNode, timeout: float = 30.0) -> ApiNode:
    """Return ``node`` once ``GET /health`` answers 200; raises ``ProcessDiedError`` if it
    exits first and ``DeadlineExceededError`` after ``timeout`` seconds."""
    wait_until(
        lambda: True if node.health_status() == 200 else None,
        timeout=timeout,
        waiting_for=f"API {node.process.name} on {node.address} to answer GET /health",
        retry_on=(OSError, http.client.HTTPException),
        watch=(node.process,),
    )
    return node
