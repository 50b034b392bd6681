"""One ``/metrics`` for several workers: prometheus-client's multiprocess mode.

The parent makes a private directory and hands it to every worker as
``PROMETHEUS_MULTIPROC_DIR``; prometheus-client then keeps each worker's counters,
histograms and gauges in memory-mapped files there, and the parent's endpoint
(``LIMITER_METRICS_LISTEN``) reads them all at each scrape (``MultiProcessCollector``).

How each metric adds up across workers:

- counters and histograms: summed, including what workers that have since exited had
  counted (so a restart never makes a counter go back);
- ``ratelimit_in_flight_calls`` / ``_decisions``: summed over the running workers;
- ``ratelimit_backend_up``: the lowest over the running workers (0 if any worker's
  probe failed);
- ``ratelimit_policy_info``: the policies in force in any running worker;
- ``ratelimit_worker_rpcs`` (only here): RPCs each running worker has answered, labelled
  by its ``pid``; ``ratelimit_workers``: how many are running;
  ``ratelimit_worker_restarts_total``: how many were started again after exiting.

What a worker counts by plain integers on its event loop (decisions per policy, sheds,
master changes, calls in flight, the policies in force; see ``limiter_service.metrics``)
is copied into those files every ``PUBLISH_INTERVAL_S`` seconds and when the worker
stops, so a scrape may lag a worker by that much; the hot path stays as it is. The
process's own CPU and memory (``process_*``) are not served with several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from limiter_service.errors import ConfigError
from limiter_service.metrics import MetricsEndpoint, PrometheusMetrics, serve_registry
from limiter_service.settings import Settings

__all__ = [
    "GAUGE_MODES",
    "MULTIPROC_ENV",
    "PUBLISH_INTERVAL_S",
    "SupervisorMetrics",
    "WorkerPublisher",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PUBLISH_INTERVAL_S = 1.0
POLICY_INFO = "ratelimit_policy_info"
GAUGE_MODES = {
    POLICY_INFO: "livemax",
    "ratelimit_in_flight_calls": "livesum",
    "ratelimit_in_flight_decisions": "livesum",
}
"""How a gauge read at scrape time in one worker combines across workers (livesum when
not listed)."""


class _Aggregated(Collector):
    """Every worker's files, combined; policies no running worker has in force (value 0:
    a worker replaced them on reload) are left out, as one process would leave them."""

    def __init__(self, path: Path) -> None:
        self._files = MultiProcessCollector(None, str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for family in self._files.collect():  # type: ignore[no-untyped-call]
            if family.name == POLICY_INFO:
                family.samples = [s for s in family.samples if s.value != 0]
            yield family


class SupervisorMetrics:
    """The parent's side: the one registry served, and what the supervisor reports."""

    def __init__(self, path: Path, workers: int) -> None:
        self._path = path
        self.registry = CollectorRegistry()
        self.registry.register(_Aggregated(path))
        self._running = Gauge(
            "ratelimit_workers",
            f"Worker processes running (LIMITER_WORKERS={workers} when all are up).",
            registry=self.registry,
        )
        self._restarts = Counter(
            "ratelimit_worker_restarts",
            "Workers started again after they exited on their own.",
            registry=self.registry,
        )
        self._endpoint: MetricsEndpoint | None = None

    def serve(self, settings: Settings) -> None:
        """Serve ``/metrics`` at ``LIMITER_METRICS_LISTEN``; raises ``ConfigError``
        naming it when the address cannot be bound."""
        address = settings.metrics_address
        if address is None:
            return
        try:
            self._endpoint = serve_registry(self.registry, *address)
        except OSError as exc:
            raise ConfigError(
                f"LIMITER_METRICS_LISTEN: cannot listen on {settings.metrics_listen} "
                f"({exc.strerror or exc})"
            ) from None

    def running(self, count: Callable[[], int]) -> None:
        self._running.set_function(count)

    def restarted(self) -> None:
        self._restarts.inc()

    def worker_gone(self, pid: int) -> None:
        """Drop the gauges of a worker that exited (its counters stay counted)."""
        mark_process_dead(pid, str(self._path))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()


class WorkerPublisher:
    """A worker's side: copies what ``metrics`` counts in plain integers into
    multiprocess counters and gauges, every ``interval_s`` and on ``stop()``. Needs
    ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client was imported."""

    def __init__(self, metrics: PrometheusMetrics, interval_s: float = PUBLISH_INTERVAL_S) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._registry = CollectorRegistry()  # never served: the files are what counts
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._published: dict[tuple[str, tuple[str, ...]], float] = {}
        self._rpcs = Gauge(
            "ratelimit_worker_rpcs",
            "RPCs this worker answered since it started, by worker pid.",
            registry=self._registry,
            multiprocess_mode="liveall",
        )
        self._task: asyncio.Task[None] | None = None

    def publish(self) -> None:
        """Copy the current numbers into the files."""
        for collector in self._metrics.scrape_time_collectors:
            for family in collector.collect():
                if family.type == "counter":
                    self._add(family)
                elif family.type == "gauge":
                    self._set(family)
        self._rpcs.set(self._metrics.rpcs)

    def _add(self, family: Metric) -> None:
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            key = (family.name, tuple(sample.labels.values()))
            delta = sample.value - self._published.get(key, 0.0)
            if delta > 0:
                counter = self._counters.get(family.name)
                if counter is None:
                    counter = self._counters[family.name] = Counter(
                        family.name,
                        family.documentation,
                        tuple(sample.labels),
                        registry=self._registry,
                    )
                child = counter.labels(*key[1]) if key[1] else counter
                child.inc(delta)
                self._published[key] = sample.value

    def _set(self, family: Metric) -> None:
        current = {tuple(s.labels.values()): s for s in family.samples}
        gone = [
            key[1] for key in self._published if key[0] == family.name and key[1] not in current
        ]
        gauge = self._gauges.get(family.name)
        if gauge is None and family.samples:
            gauge = self._gauges[family.name] = Gauge(
                family.name,
                family.documentation,
                tuple(family.samples[0].labels),
                registry=self._registry,
                multiprocess_mode=GAUGE_MODES.get(family.name, "livesum"),  # type: ignore[arg-type]
            )
        if gauge is None:
            return
        for labels in gone:  # e.g. a policy a reload removed
            (gauge.labels(*labels) if labels else gauge).set(0)
            del self._published[family.name, labels]
        for labels, sample in current.items():
            (gauge.labels(*labels) if labels else gauge).set(sample.value)
            self._published[family.name, labels] = sample.value

    async def _run(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop publishing, after one last copy."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.publish()
