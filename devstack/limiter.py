"""Starting the decision service (``python -m limiter_service``) as a real process."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.processes import ProcessGroup, ServiceNode
from devstack.waiting import wait_until

__all__ = ["SERVING", "LimiterNode", "start_limiter", "wait_limiter"]

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class LimiterNode(ServiceNode):
    """A running limiter and where it listens."""

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
    wait: bool = True,
    wait_serving: bool = True,
    timeout: float = 30.0,
) -> LimiterNode:
    """Start a limiter listening on ``host:port`` with ``env`` laid over ours.

    With ``wait`` (the default) returns once it is ready as ``wait_limiter`` says (with
    ``wait_serving`` and ``timeout``); without, at once: call ``wait_limiter`` later, e.g.
    after starting several processes side by side.
    """
    process = group.start(
        name,
        [sys.executable, "-m", "limiter_service"],
        env={"LIMITER_LISTEN": f"{host}:{port}", **env},
    )
    node = LimiterNode(process, host, port)
    if wait:
        wait_limiter(node, serving=wait_serving, timeout=timeout)
    return node


def wait_limiter(node: LimiterNode, *, serving: bool = True, timeout: float = 30.0) -> LimiterNode:
    """Return ``node`` once its health service answers: ``SERVING`` when ``serving``, else
    any status (a limiter whose backend is down is up, and answers with its failure mode).
    Raises ``ProcessDiedError`` if it exits first and ``DeadlineExceededError`` after
    ``timeout`` seconds."""

    def ready() -> bool | None:
        status = node.health(timeout=0.5)
        return True if status == SERVING or not serving else None

    wait_until(
        ready,
        timeout=timeout,
        waiting_for=f"limiter {node.process.name} on {node.address} to report health",
        retry_on=(grpc.RpcError,),
        watch=(node.process,),
    )
    return node
