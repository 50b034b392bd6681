"""What the limiter counts, in one place: the ``Metrics`` interface the other layers call,
and its two implementations.

``PrometheusMetrics`` records into a registry of its own and serves it over HTTP
(``LIMITER_METRICS_LISTEN``); ``NoMetrics`` records nothing and is what every layer gets
when that variable is empty, so turning metrics off also turns off their cost.

Contract, for every method of ``Metrics``: it never raises, never blocks, and takes well
under a microsecond per decision. Labels are bounded: a policy name (from the policies
file, never a key), an outcome, a method, a status code or a cause from a fixed set.
Everything a label set needs is bound once and kept: per policy, a row of plain counters
(one per outcome, and near-limit), added to on the event loop's thread and read when
Prometheus scrapes; per method and status, a histogram child. A decision costs a dict
look-up and an integer increment, not a lock. Counters of things other layers already
count (sheds, master changes, the policies in force, calls in flight) are read when
Prometheus scrapes too, so they cost the hot path nothing.

=========================================  ===========================  ===================
metric                                     labels                       recorded by
=========================================  ===========================  ===================
``ratelimit_decisions_total``              policy, outcome              limiter.py
``ratelimit_near_limit_total``             policy                       limiter.py
``ratelimit_deny_cache_answers_total``     policy                       limiter.py
``ratelimit_failure_mode_answers_total``   cause                        limiter.py
``ratelimit_envoy_decisions_total``        domain, key, outcome         envoy/service.py
``ratelimit_rpc_duration_seconds``         method, code                 grpc_service.py
``ratelimit_backend_round_trip_seconds``   result                       batching.py
``ratelimit_backend_decisions_per_round_trip``  --                      batching.py
``ratelimit_backend_up``                   --                           health.py
``ratelimit_policy_reloads_total``         result                       reload.py (hook)
``ratelimit_master_changes_total``         kind                         read from the
                                                                        connector
``ratelimit_shed_calls_total``             limit                        read from admission
``ratelimit_shed_decisions_total``         --                           read from admission
``ratelimit_in_flight_calls`` / ``_decisions``  --                      read from admission
``ratelimit_policy_info``                  policy, algorithm, limit,    read from the
                                           window_seconds, mode         limiter's policies
=========================================  ===========================  ===================
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from limiter_service.admission import Admission
from limiter_service.backends.connection import RestartWatch
from limiter_service.decision import US_PER_SECOND, Decision, Reason
from limiter_service.errors import FailureCause
from limiter_service.policies import PolicySet

__all__ = [
    "DEFAULT_NEAR_LIMIT_RATIO",
    "NO_METRICS",
    "OUTCOMES",
    "MasterEvents",
    "Metrics",
    "MetricsEndpoint",
    "NoMetrics",
    "PrometheusMetrics",
]

DEFAULT_NEAR_LIMIT_RATIO = 0.2
OUTCOMES: dict[Reason, str] = {
    Reason.WITHIN_LIMIT: "allowed",
    Reason.OVER_LIMIT: "denied",
    Reason.SHADOW_OVER_LIMIT: "shadow_denied",
    Reason.FAIL_OPEN: "fail_open",
    Reason.FAIL_CLOSED: "fail_closed",
    Reason.UNLIMITED: "unlimited",
    Reason.NOT_ALL_ALLOWED: "not_all_allowed",
}
"""The ``outcome`` label of each reason a decision can have."""
SHED_LIMITS = ("rpcs", "peer_rpcs", "decisions", "peer_decisions")
RELOAD_RESULTS = ("success", "error")
# Seconds: a decision on loopback Redis takes about a millisecond, a failure-mode answer up
# to the decision timeout (100 ms by default), a slow client's deadline a few seconds.
_LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
# A round trip carries at most 1000 decisions (batching.MAX_HITS_PER_TRIP).
_TRIP_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class MasterEvents(Protocol):
    """What a Redis connector counts of its master: address changes after the first
    discovery (failovers), and restarts at an unchanged address (``restarts.restarts``)."""

    @property
    def master_changes(self) -> int: ...

    @property
    def restarts(self) -> RestartWatch: ...


class Metrics(Protocol):
    """What the layers report; see the module docstring for the contract."""

    def decided(self, decisions: Sequence[Decision]) -> None:
        """Decisions answered (by the backend, the failure mode, or an unlimited policy)."""
        ...

    def deny_cached(self, policy: str) -> None:
        """A denial of ``policy`` was answered from the deny cache (it is also among the
        decisions ``decided`` hears of)."""
        ...

    def fell_back(self, cause: FailureCause, count: int) -> None:
        """``count`` decisions were answered by the failure mode because of ``cause``."""
        ...

    def envoy_decided(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Envoy descriptors answered, as ``(domain, key, outcome)``: the domain ("" when
        unknown), the rule's metric key ("" when no rule matched) and an ``OUTCOMES`` value
        or ``no_rule``, ``replaced``, ``unlimited``."""
        ...

    def rpc(self, method: str, code: str, seconds: float) -> None:
        """An RPC of ``method`` (``ShouldAllow``, ...) ended with status ``code`` (a
        ``grpc.StatusCode`` name) after ``seconds`` in its handler."""
        ...

    def round_trip(self, seconds: float, decisions: int, ok: bool) -> None:
        """One backend call carrying ``decisions`` decisions took ``seconds``; ``ok``:
        it answered (else it raised)."""
        ...

    def backend_probed(self, up: bool) -> None:
        """The health probe's decision on the backend succeeded (``up``) or not."""
        ...

    def reloaded(self, result: str) -> None:
        """A policy reload ended with ``result`` (``success`` or ``error``)."""
        ...

    def watch(
        self,
        *,
        policies: Callable[[], PolicySet] | None = None,
        admission: Admission | None = None,
        master: MasterEvents | None = None,
    ) -> None:
        """Sources read at scrape time: the policies in force, admission's counts, the
        Redis connector's master events."""
        ...


class NoMetrics:
    """Records nothing (``LIMITER_METRICS_LISTEN`` empty)."""

    def decided(self, decisions: Sequence[Decision]) -> None:
        pass

    def deny_cached(self, policy: str) -> None:
        pass

    def fell_back(self, cause: FailureCause, count: int) -> None:
        pass

    def envoy_decided(self, rows: Sequence[tuple[str, str, str]]) -> None:
        pass

    def rpc(self, method: str, code: str, seconds: float) -> None:
        pass

    def round_trip(self, seconds: float, decisions: int, ok: bool) -> None:
        pass

    def backend_probed(self, up: bool) -> None:
        pass

    def reloaded(self, result: str) -> None:
        pass

    def watch(
        self,
        *,
        policies: Callable[[], PolicySet] | None = None,
        admission: Admission | None = None,
        master: MasterEvents | None = None,
    ) -> None:
        pass


NO_METRICS = NoMetrics()


class _PolicyCounts:
    """One policy's counters, bound when its first decision is counted: ``by_reason``
    indexed by ``Reason`` value, ``near_limit`` and ``deny_cached``. Only the event loop's
    thread adds; a scrape reads (an int is read whole)."""

    __slots__ = ("by_reason", "deny_cached", "near_limit")

    def __init__(self) -> None:
        self.by_reason = [0] * (max(Reason) + 1)
        self.near_limit = 0
        self.deny_cached = 0


class MetricsEndpoint(NamedTuple):
    """The HTTP server Prometheus scrapes (a daemon thread); ``close()`` stops it."""

    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class PrometheusMetrics:
    """``Metrics`` in a ``prometheus_client`` registry of its own (``registry``), plus the
    process's CPU and memory. ``near_limit_ratio``: an allowed decision counts as near the
    limit when it leaves fewer than that share of the limit (``remaining < ratio * limit``)."""

    def __init__(
        self,
        near_limit_ratio: float = DEFAULT_NEAR_LIMIT_RATIO,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._ratio = near_limit_ratio
        r = self.registry
        self._by_policy: dict[str, _PolicyCounts] = {}
        r.register(_DecisionCollector(self._by_policy, near_limit_ratio))
        self._envoy: dict[tuple[str, str, str], int] = {}
        r.register(_EnvoyCollector(self._envoy))
        fallbacks = Counter(
            "ratelimit_failure_mode_answers",
            "Decisions answered by the failure mode, by cause (timeout, unavailable, "
            "refused, bad_reply).",
            ("cause",),
            registry=r,
        )
        self._fallbacks = {cause: fallbacks.labels(cause.value) for cause in FailureCause}
        self._rpc_seconds = Histogram(
            "ratelimit_rpc_duration_seconds",
            "Time in the RPC handler, by method and status code.",
            ("method", "code"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        trip_seconds = Histogram(
            "ratelimit_backend_round_trip_seconds",
            "Backend calls (one Redis round trip, retries included), by result (ok, error).",
            ("result",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._trip_ok, self._trip_error = trip_seconds.labels("ok"), trip_seconds.labels("error")
        self._trip_size = Histogram(
            "ratelimit_backend_decisions_per_round_trip",
            "Decisions one backend call carried (coalescing).",
            buckets=_TRIP_SIZE_BUCKETS,
            registry=r,
        )
        self._backend_up = Gauge(
            "ratelimit_backend_up",
            "1 when the latest health probe's decision on the backend succeeded, else 0.",
            registry=r,
        )
        reloads = Counter(
            "ratelimit_policy_reloads",
            "Reloads of the policies file and the Envoy configuration, by result (success, error).",
            ("result",),
            registry=r,
        )
        self._reloads = {result: reloads.labels(result) for result in RELOAD_RESULTS}
        self._state = _StateCollector()
        r.register(self._state)
        ProcessCollector(registry=r)
        self._by_rpc: dict[tuple[str, str], Histogram] = {}

    def decided(self, decisions: Sequence[Decision]) -> None:
        by_policy, ratio, within = self._by_policy, self._ratio, Reason.WITHIN_LIMIT
        for _, limit, remaining, _, _, policy, reason, _ in decisions:
            counts = by_policy.get(policy)
            if counts is None:
                counts = by_policy[policy] = _PolicyCounts()
            counts.by_reason[reason] += 1
            if reason is within and remaining < limit * ratio:
                counts.near_limit += 1

    def deny_cached(self, policy: str) -> None:
        counts = self._by_policy.get(policy)
        if counts is None:
            counts = self._by_policy[policy] = _PolicyCounts()
        counts.deny_cached += 1

    def fell_back(self, cause: FailureCause, count: int) -> None:
        self._fallbacks[cause].inc(count)

    def envoy_decided(self, rows: Sequence[tuple[str, str, str]]) -> None:
        counts = self._envoy
        for row in rows:
            counts[row] = counts.get(row, 0) + 1

    def rpc(self, method: str, code: str, seconds: float) -> None:
        child = self._by_rpc.get((method, code))
        if child is None:
            child = self._by_rpc[method, code] = self._rpc_seconds.labels(method, code)
        child.observe(seconds)

    def round_trip(self, seconds: float, decisions: int, ok: bool) -> None:
        (self._trip_ok if ok else self._trip_error).observe(seconds)
        self._trip_size.observe(decisions)

    def backend_probed(self, up: bool) -> None:
        self._backend_up.set(1 if up else 0)

    def reloaded(self, result: str) -> None:
        child = self._reloads.get(result)
        if child is not None:
            child.inc()

    def watch(
        self,
        *,
        policies: Callable[[], PolicySet] | None = None,
        admission: Admission | None = None,
        master: MasterEvents | None = None,
    ) -> None:
        state = self._state
        if policies is not None:
            state.policies = policies
        if admission is not None:
            state.admission = admission
        if master is not None:
            state.master = master

    def serve(self, host: str, port: int) -> MetricsEndpoint:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; raises ``OSError``
        when the address cannot be bound."""
        server, thread = start_http_server(port, host, registry=self.registry)
        return MetricsEndpoint(server, thread)


class _DecisionCollector(Collector):
    """``ratelimit_decisions_total``, ``ratelimit_near_limit_total`` and
    ``ratelimit_deny_cache_answers_total`` from the per-policy counters, at scrape time
    (every outcome of a policy shows, zeros included, from its first decision on)."""

    def __init__(self, by_policy: dict[str, _PolicyCounts], ratio: float) -> None:
        self._by_policy = by_policy
        self._ratio = ratio

    def collect(self) -> Iterable[Metric]:
        rows = list(self._by_policy.items())  # one C-level copy: safe while the loop adds
        decisions = CounterMetricFamily(
            "ratelimit_decisions",
            "Decisions answered, by policy and outcome (allowed, denied, shadow_denied, "
            "fail_open, fail_closed, unlimited).",
            labels=("policy", "outcome"),
        )
        near = CounterMetricFamily(
            "ratelimit_near_limit",
            f"Allowed decisions that left less than {self._ratio:g} of the limit, by policy.",
            labels=("policy",),
        )
        cached = CounterMetricFamily(
            "ratelimit_deny_cache_answers",
            "Denials answered from the deny cache without a backend round trip, by policy "
            "(also counted in ratelimit_decisions_total as denied).",
            labels=("policy",),
        )
        for policy, counts in rows:
            by_reason = list(counts.by_reason)
            for reason, outcome in OUTCOMES.items():
                decisions.add_metric((policy, outcome), by_reason[reason])
            near.add_metric((policy,), counts.near_limit)
            cached.add_metric((policy,), counts.deny_cached)
        yield decisions
        yield near
        yield cached


class _EnvoyCollector(Collector):
    """``ratelimit_envoy_decisions_total`` from the counts by (domain, key, outcome)."""

    def __init__(self, counts: dict[tuple[str, str, str], int]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "ratelimit_envoy_decisions",
            "Envoy descriptors answered (ShouldRateLimit), by domain, rule key (values only "
            "where the rule asks for detailed_metric or value_to_metric) and outcome "
            "(those of ratelimit_decisions_total, and no_rule, replaced).",
            labels=("domain", "key", "outcome"),
        )
        for labels, count in list(self._counts.items()):
            family.add_metric(labels, count)
        yield family


class _StateCollector(Collector):
    """What other layers count themselves, read at scrape time (from the scraping thread:
    each source is read in one step, a reference or a C-level copy)."""

    def __init__(self) -> None:
        self.policies: Callable[[], PolicySet] | None = None
        self.admission: Admission | None = None
        self.master: MasterEvents | None = None

    def collect(self) -> Iterable[Metric]:
        if self.policies is not None:
            yield _policy_info(self.policies())
        if self.admission is not None:
            yield from _admission(self.admission)
        if self.master is not None:
            changes = CounterMetricFamily(
                "ratelimit_master_changes",
                "Redis master changes: a new address (failover) or a restart at the same "
                "address (a new run_id).",
                labels=("kind",),
            )
            changes.add_metric(("address",), self.master.master_changes)
            changes.add_metric(("restart",), self.master.restarts.restarts)
            yield changes


def _policy_info(policies: PolicySet) -> Metric:
    info = GaugeMetricFamily(
        "ratelimit_policy_info",
        "The policies in force (value 1): algorithm, limit, window in seconds and mode "
        "(enforce, shadow, unlimited).",
        labels=("policy", "algorithm", "limit", "window_seconds", "mode"),
    )
    for policy in policies:
        mode = "unlimited" if policy.unlimited else "shadow" if policy.shadow else "enforce"
        window = f"{policy.window_us / US_PER_SECOND:g}"
        labels = (policy.name, policy.algorithm.value, str(policy.limit), window, mode)
        info.add_metric(labels, 1)
    return info


def _admission(admission: Admission) -> Iterable[Metric]:
    shed = admission.shed
    by_limit = dict(shed.by_limit)
    calls = CounterMetricFamily(
        "ratelimit_shed_calls",
        "Calls shed by admission control (RESOURCE_EXHAUSTED), by the limit reached.",
        labels=("limit",),
    )
    for limit in dict.fromkeys((*SHED_LIMITS, *by_limit)):
        calls.add_metric((limit,), by_limit.get(limit, 0))
    yield calls
    yield CounterMetricFamily(
        "ratelimit_shed_decisions",
        "Decisions carried by the calls admission control shed.",
        value=shed.decisions,
    )
    yield GaugeMetricFamily(
        "ratelimit_in_flight_calls", "Calls admitted or waiting for room.", value=admission.rpcs
    )
    yield GaugeMetricFamily(
        "ratelimit_in_flight_decisions",
        "Decisions admitted and not yet answered.",
        value=admission.decisions,
    )
