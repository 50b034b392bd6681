"""``grpc.health.v1.Health`` that follows the backend.

A background task pings the backend about once per interval and sets ``SERVING`` for ``""``
and ``ratelimit.v1.RateLimiter`` while it answers, ``NOT_SERVING`` while it does not, and
logs each change. The servicer itself is grpcio-health-checking's.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health, health_pb2

from limiter_service.backends.base import Backend
from limiter_service.errors import BackendUnavailable
from ratelimit_client import proto

log = logging.getLogger(__name__)
SERVICES = ("", proto.SERVICE_NAME)
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Owns the health servicer and the task that keeps it truthful."""

    def __init__(self, backend: Backend, interval_s: float, timeout_s: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self._backend = backend
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self.serving: bool | None = None

    async def check_once(self) -> bool:
        """Ping the backend once and publish the result; returns whether it answered."""
        loop = asyncio.get_running_loop()
        try:
            await self._backend.ping(loop.time() + self._timeout_s)
            ok = True
        except BackendUnavailable as exc:
            ok = False
            if self.serving is not False:
                log.warning("health: NOT_SERVING, backend does not answer: %s", exc)
        if ok and self.serving is False:
            log.info("health: SERVING again, backend answers")
        if ok != self.serving:
            self.serving = ok
            for service in SERVICES:
                await self.servicer.set(service, _SERVING if ok else _NOT_SERVING)
        return ok

    async def _run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def shutdown(self) -> None:
        """Stop checking and report NOT_SERVING for good (server is going away)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.servicer.enter_graceful_shutdown()
