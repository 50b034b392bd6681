"""Starting the decision service (``python -m limiter_service``) as a real process."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.processes import ManagedProcess, ProcessGroup
from devstack.waiting import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class LimiterNode:
    """A running limiter and where it listens."""

    process: ManagedProcess
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def health(self, service: str = "", timeout: float = 1.0) -> int:
        """The ``grpc.health.v1`` status for ``service`` (raises ``grpc.RpcError``)."""
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            return int(reply.status)


def start_limiter(
    group: ProcessGroup,
    name: str,
    port: int,
    env: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    wait_serving: bool = True,
    timeout: float = 30.0,
) -> LimiterNode:
    """Start a limiter listening on ``host:port`` with ``env`` laid over ours. Returns once
    its health service answers (``SERVING`` when ``wait_serving``, else any status)."""
    process = group.start(
        name,
        [sys.executable, "-m", "limiter_service"],
        env={"LIMITER_LISTEN": f"{host}:{port}", **env},
    )
    node = LimiterNode(process, host, port)

    def ready() -> bool | None:
        status = node.health(timeout=0.5)
        return True if status == SERVING or not wait_serving else None

    wait_until(
        ready,
        timeout=timeout,
        waiting_for=f"limiter {name} on {node.address} to report health",
        retry_on=(grpc.RpcError,),
        watch=(process,),
    )
    return node
