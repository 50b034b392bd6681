"""The processes under test: one ``redis-server``, the limiter and the echo server.

Each is a ``devstack`` managed process on a free loopback port, logging to ``<workdir>``,
stopped by its PID (SIGTERM, then SIGKILL after a grace period). Start-up waits by polling
a real readiness signal, never by sleeping: Redis answers PING, the echo server accepts
TCP, the limiter's ``grpc.health.v1`` check says SERVING. A process that exits while we
wait raises ``devstack.ProcessDiedError`` carrying its log tail; one that is not ready in
time raises ``devstack.DeadlineExceededError``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2

from devstack import (
    ManagedProcess,
    ProcessGroup,
    free_port,
    start_redis,
    wait_for_tcp,
    wait_until,
)

__all__ = ["BENCH_POLICY", "BenchServers", "RedisHandle", "policies_yaml"]

READY_TIMEOUT_S = 20.0
BENCH_POLICY = "default"
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"


def policies_yaml(limit: int, window: str) -> str:
    """A policies file with one fixed-window ``default`` policy of ``limit`` per ``window``."""
    return (
        "policies:\n"
        f"  {BENCH_POLICY}:\n"
        f"    limit: {limit}\n"
        f"    window: {window}\n"
        "    algorithm: fixed_window\n"
    )


class RedisHandle:
    """A running ``redis-server`` and a sync client for it (replies decoded to ``str``)."""

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.client = redis.Redis(port=port, socket_timeout=5.0, decode_responses=True)

    @property
    def version(self) -> str:
        info: dict[str, Any] = self.client.info("server")
        return str(info.get("redis_version", "?"))


class BenchServers:
    """Starts and stops the benchmark's servers; a context manager that stops them all."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._group = ProcessGroup(workdir / "logs", stop_timeout=10.0)

    def __enter__(self) -> BenchServers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._group.stop()

    def start_redis(self) -> RedisHandle:
        """``redis-server`` storing nothing on disk (``save ""``, no AOF)."""
        server = start_redis(self._group, "redis", workdir=self._workdir, timeout=READY_TIMEOUT_S)
        return RedisHandle(server.process, server.port)

    def start_limiter(self, name: str, env: dict[str, str]) -> tuple[ManagedProcess, str]:
        """``python -m limiter_service`` with ``env`` laid over ours; returns it and its
        ``host:port`` once its health check says SERVING."""
        target = f"127.0.0.1:{free_port()}"
        full_env = {"LIMITER_LISTEN": target, "LIMITER_SHUTDOWN_GRACE_S": "1", **env}
        process = self._group.start(name, [sys.executable, "-m", "limiter_service"], full_env)
        with grpc.insecure_channel(target) as channel:
            check = channel.unary_unary(
                HEALTH_CHECK_METHOD,
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )

            def serving() -> bool | None:
                reply = check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                return True if reply.status == health_pb2.HealthCheckResponse.SERVING else None

            wait_until(
                serving,
                timeout=READY_TIMEOUT_S,
                waiting_for=f"limiter {name!r} on {target} to report SERVING",
                retry_on=(grpc.RpcError,),
                watch=(process,),
            )
        return process, target

    def start_echo(self) -> tuple[ManagedProcess, str]:
        """``python -m bench.echo_server``; returns it and its ``host:port`` once it accepts
        connections."""
        port = free_port()
        target = f"127.0.0.1:{port}"
        argv = [sys.executable, "-m", "bench.echo_server", "--listen", target]
        process = self._group.start("echo", argv)
        wait_for_tcp("127.0.0.1", port, READY_TIMEOUT_S, process)
        return process, target

    @staticmethod
    def stop(process: ManagedProcess) -> int:
        """Stop one server now (SIGTERM, SIGKILL after 10 s); returns its exit status."""
        return process.terminate(10.0)
