"""``grpc.health.v1.Health`` that says whether decisions succeed.

About once per interval a background task re-checks the backend (for Sentinel: asks the
sentinels and confirms the master) and then runs the real decision path on a reserved key
(``<prefix>:{__health__}:fw``): one round trip carrying a dry run and a write of one unit,
with a TTL like every key. ``SERVING`` (for ``""``, ``ratelimit.v1.RateLimiter`` and
``envoy.service.ratelimit.v3.RateLimitService`` when it is served) means
that probe succeeded and no decision in the last interval was answered by the failure mode;
anything else is ``NOT_SERVING``. So a master that answers PING but refuses writes
(NOREPLICAS, a demoted master, OOM, an expired master lease) is reported. Each change is
logged with its cause. The servicer itself is grpcio-health-checking's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from grpc_health.v1 import health, health_pb2

from limiter_service.backends.base import Backend
from limiter_service.decision import US_PER_SECOND, Algorithm, Hit, Policy
from limiter_service.envoy import proto as envoy_proto
from limiter_service.errors import BackendUnavailable
from limiter_service.metrics import NO_METRICS, Metrics
from limiter_service.timeouts import patient_timeout
from ratelimit_client import proto

log = logging.getLogger(__name__)
SERVICES = ("", proto.SERVICE_NAME)
#: Reported as well when the Envoy Rate Limit Service is served (``LIMITER_ENVOY_CONFIG``).
ENVOY_SERVICE = envoy_proto.SERVICE_NAME
#: Health service name for liveness probes: SERVING from start until shutdown, whatever
#: the backend does (restarting a limiter never brings Redis back).
LIVENESS_SERVICE = "liveness"
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The probe's own policy: never denies in practice, a one-second window keeps its key short-lived.
PROBE_POLICY = Policy("__health__", 1 << 30, US_PER_SECOND, Algorithm.FIXED_WINDOW, 1 << 30)


def probe_hits(key_prefix: str) -> list[Hit]:
    """A dry run and a one-unit write on the reserved health key."""
    key = f"{key_prefix}:{{__health__}}:fw"
    return [Hit(key, PROBE_POLICY, 1, True), Hit(key, PROBE_POLICY, 1, False)]


class HealthReporter:
    """Owns the health servicer and the task that keeps it truthful.

    ``last_fallback`` returns the ``time.monotonic()`` of the latest failure-mode answer
    (``None`` when there was none); one within the last interval counts against SERVING.
    Each probe's result goes to ``metrics`` (the backend up or down). ``services``: the
    names reported (liveness's aside).
    """

    def __init__(
        self,
        backend: Backend,
        interval_s: float,
        timeout_s: float,
        key_prefix: str,
        last_fallback: Callable[[], float | None] = lambda: None,
        metrics: Metrics = NO_METRICS,
        services: Sequence[str] = SERVICES,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self._services = tuple(services)
        self._metrics = metrics
        self._backend = backend
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._hits = probe_hits(key_prefix)
        self._last_fallback = last_fallback
        self._task: asyncio.Task[None] | None = None
        self._alive = False
        self.serving: bool | None = None

    async def _problem(self) -> str | None:
        """Why decisions would not succeed now, or ``None``."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()  # the failure-mode log's clock
        await self._backend.refresh(loop.time() + self._timeout_s)
        deadline = loop.time() + self._timeout_s
        try:
            async with patient_timeout(self._timeout_s):
                await self._backend.decide(self._hits, deadline)
        except (BackendUnavailable, TimeoutError) as exc:
            self._metrics.backend_probed(False)
            return f"a probe decision failed: {str(exc) or 'no answer in time'}"
        self._metrics.backend_probed(True)
        last = self._last_fallback()
        if last is not None and last >= started - self._interval_s:
            return "the failure mode answered a decision in the last interval"
        return None

    async def check_once(self) -> bool:
        """Probe once and publish the result; returns whether decisions succeed."""
        if not self._alive:
            await self.servicer.set(LIVENESS_SERVICE, _SERVING)
            self._alive = True
        problem = await self._problem()
        ok = problem is None
        if not ok and self.serving is not False:
            log.warning("health: NOT_SERVING, %s", problem)
        if ok and self.serving is False:
            log.info("health: SERVING again, decisions succeed")
        if ok != self.serving:
            self.serving = ok
            for service in self._services:
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
