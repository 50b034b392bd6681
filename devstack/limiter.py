"""Starting the decision service (``python -m limiter_service``) as a real process.

A limiter started with TLS (``LIMITER_TLS_CERT`` / ``LIMITER_TLS_KEY`` in its env) serves
only TLS, so its node carries the channel credentials our own probes connect with. Its
metrics are served on a free port of its own (never the default 9090, which many limiters
on one machine cannot share) unless ``LIMITER_METRICS_LISTEN`` says otherwise. It runs one
worker (the PID started is the one serving) unless ``LIMITER_WORKERS`` says otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.ports import free_port
from devstack.processes import ProcessGroup, ServiceNode
from devstack.scrape import Samples, scrape
from devstack.waiting import wait_until

__all__ = ["SERVING", "LimiterNode", "start_limiter", "wait_limiter"]

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class LimiterNode(ServiceNode):
    """A running limiter and where it listens; ``credentials`` (``None``: plaintext) are
    what ``channel()`` connects with, expecting ``server_name`` in the limiter's certificate
    (``None``: the host). ``metrics_address`` is where it serves ``/metrics`` (``None``:
    metrics off)."""

    credentials: grpc.ChannelCredentials | None = field(default=None, compare=False)
    server_name: str | None = None
    metrics_address: str | None = None

    def metrics(self, timeout: float = 5.0) -> Samples:
        """Scrape its ``/metrics`` once (``devstack.scrape``); raises ``ValueError`` when
        its metrics are off."""
        if self.metrics_address is None:
            raise ValueError(f"limiter {self.process.name} serves no metrics")
        return scrape(self.metrics_address, timeout=timeout)

    def channel(self) -> grpc.Channel:
        """A new blocking channel to the limiter (TLS with ``credentials``); close it."""
        if self.credentials is None:
            return grpc.insecure_channel(self.address)
        options = (
            []
            if self.server_name is None
            else [("grpc.ssl_target_name_override", self.server_name)]
        )
        return grpc.secure_channel(self.address, self.credentials, options=options)

    def health(self, service: str = "", timeout: float = 1.0) -> int:
        """The ``grpc.health.v1`` status for ``service`` (raises ``grpc.RpcError``)."""
        with self.channel() as channel:
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
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
) -> LimiterNode:
    """Start a limiter listening on ``host:port`` with ``env`` laid over ours.

    With ``wait`` (the default) returns once it is ready as ``wait_limiter`` says (with
    ``wait_serving`` and ``timeout``); without, at once: call ``wait_limiter`` later, e.g.
    after starting several processes side by side. A limiter given TLS files in ``env``
    needs ``credentials`` that it accepts (a client certificate too under mutual TLS) for
    the readiness check and ``LimiterNode.channel()``, and ``server_name`` when its
    certificate does not name ``host``. Metrics are served on a free port of ``host``
    unless ``env`` sets ``LIMITER_METRICS_LISTEN`` (empty: off), and ``LIMITER_WORKERS``
    is 1 unless ``env`` sets it.
    """
    metrics = env.get("LIMITER_METRICS_LISTEN")
    if metrics is None:
        metrics = f"{host}:{free_port(host)}"
    process = group.start(
        name,
        [sys.executable, "-m", "limiter_service"],
        env={
            "LIMITER_LISTEN": f"{host}:{port}",
            "LIMITER_METRICS_LISTEN": metrics,
            "LIMITER_WORKERS": "1",
            **env,
        },
    )
    node = LimiterNode(process, host, port, credentials, server_name, metrics or None)
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
