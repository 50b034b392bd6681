"""``ClientMetrics`` in Prometheus (``pip install 'ratelimit-client[prometheus]'``)::

    registry = CollectorRegistry()
    metrics = PrometheusClientMetrics(registry)
    async with LimiterClient(settings, metrics=metrics) as limiter: ...
    # serve prometheus_client.generate_latest(registry) at /metrics

==========================================  ============  =================================
metric                                      labels        meaning
==========================================  ============  =================================
``ratelimit_client_decisions_total``        outcome       decisions returned: allowed,
                                                          denied, shadow_denied, fail_open,
                                                          fail_closed, unlimited
``ratelimit_client_failure_mode_answers``   cause         decisions the failure mode gave:
``_total``                                                ``limiter_backend`` (the limiter
                                                          said so) or the call's status
                                                          (``deadline_exceeded``, ...)
``ratelimit_client_call_duration_seconds``  method, code  gRPC calls to the limiter
``ratelimit_client_decisions_per_call``     --            decisions one call carried
                                                          (coalescing)
``ratelimit_client_deny_cache_answers``     --            denials answered from the deny
``_total``                                                cache, without a call (also in
                                                          decisions_total as denied)
==========================================  ============  =================================
"""

from __future__ import annotations

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ratelimit_client.prometheus needs prometheus-client: "
        "pip install 'ratelimit-client[prometheus]'"
    ) from exc

from ratelimit_client.decision import Reason
from ratelimit_client.metrics import OUTCOMES

__all__ = ["PrometheusClientMetrics"]

# Seconds: a decision takes about a millisecond; the default deadline is 50 ms.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# A call carries at most 256 decisions (coalescing.MAX_BATCH_ITEMS).
_CALL_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class PrometheusClientMetrics:
    """Records into ``registry`` (default: ``prometheus_client``'s global one, which
    takes one instance per process). Label children are bound once and kept."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else REGISTRY
        self.registry = r
        decisions = Counter(
            "ratelimit_client_decisions",
            "Decisions returned, by outcome.",
            ("outcome",),
            registry=r,
        )
        self._outcomes = {reason: decisions.labels(name) for reason, name in OUTCOMES.items()}
        self._causes = Counter(
            "ratelimit_client_failure_mode_answers",
            "Decisions answered by the failure mode, by cause (limiter_backend: the "
            "limiter said so; else the call's gRPC status).",
            ("cause",),
            registry=r,
        )
        self._seconds = Histogram(
            "ratelimit_client_call_duration_seconds",
            "gRPC calls to the limiter, by method and status code.",
            ("method", "code"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._sizes = Histogram(
            "ratelimit_client_decisions_per_call",
            "Decisions one gRPC call carried (coalescing).",
            buckets=_CALL_SIZE_BUCKETS,
            registry=r,
        )
        self._deny_cached = Counter(
            "ratelimit_client_deny_cache_answers",
            "Denials answered from the deny cache without a call (also counted as denied).",
            registry=r,
        )
        self._by_call: dict[tuple[str, str], Histogram] = {}
        self._by_cause: dict[str, Counter] = {}

    def call(self, method: str, code: str, seconds: float, decisions: int) -> None:
        child = self._by_call.get((method, code))
        if child is None:
            child = self._by_call[method, code] = self._seconds.labels(method, code)
        child.observe(seconds)
        if decisions:
            self._sizes.observe(decisions)

    def answered(self, reason: Reason, cause: str = "") -> None:
        outcome = self._outcomes.get(reason)
        if outcome is not None:
            outcome.inc()
        if cause:
            child = self._by_cause.get(cause)
            if child is None:
                child = self._by_cause[cause] = self._causes.labels(cause)
            child.inc()

    def deny_cached(self) -> None:
        self._deny_cached.inc()
