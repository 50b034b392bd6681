"""Starting an API replica (the demo, ``python -m api``, or any ASGI app under uvicorn) as a
real process."""

from __future__ import annotations

import http.client
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import ProcessGroup, ServiceNode
from devstack.waiting import wait_until

__all__ = ["REPO_ROOT", "ApiNode", "start_api", "wait_api"]

#: Where the API replicas run: ``api`` (and test apps) import from here, not from the
#: caller's working directory.
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ApiNode(ServiceNode):
    """A running API replica and where it listens."""

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

    def log(self) -> str:
        """Everything the replica wrote to stdout and stderr so far ("" before the first
        line), undecodable bytes replaced."""
        try:
            return self.process.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""


def start_api(
    group: ProcessGroup,
    name: str,
    port: int,
    env: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    app: str | None = None,
) -> ApiNode:
    """Start API replica ``name`` on ``host:port`` with ``env`` laid over ours; does not wait
    (see ``wait_api``).

    Without ``app`` it is the demo through its entry point, ``python -m api``; with ``app``
    (``module:attribute``, e.g. ``tests.api.example_app:app``) that ASGI app under
    ``python -m uvicorn``, with uvicorn's proxy-header rewriting and access log off, as the
    demo documents. Either way it runs in ``REPO_ROOT``, whatever our working directory.
    ``API_INSTANCE``, ``API_HOST`` and ``API_PORT`` are set from the arguments unless
    ``env`` sets them (an ``app`` listens where the arguments say regardless).
    """
    if app is None:
        argv = [sys.executable, "-m", "api"]
    else:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            host,
            "--port",
            str(port),
            "--no-proxy-headers",
            "--no-access-log",
        ]
    process = group.start(
        name,
        argv,
        env={"API_INSTANCE": name, "API_HOST": host, "API_PORT": str(port), **env},
        cwd=REPO_ROOT,
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
