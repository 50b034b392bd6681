"""The hook through which the client reports what it does, for an app's own metrics.

The client library depends on no metrics library. A ``ClientMetrics`` given to
``LimiterClient``, ``SyncLimiterClient`` or ``open_rate_limiter`` hears of every gRPC call
and every decision, and of each denial answered from the deny cache; without one
(``NO_METRICS``) nothing is recorded and nothing costs.
``ratelimit_client.prometheus.PrometheusClientMetrics`` is a ready implementation for apps
that have ``prometheus-client`` (``pip install 'ratelimit-client[prometheus]'``); the demo
API wires it and serves ``/metrics``.

Why a hook the app wires, rather than metrics that switch on whenever ``prometheus_client``
happens to be importable: metrics registered by a library into the global registry collide
when a process creates two clients (tests, two apps in one process), and an app decides for
itself which registry it serves and where.

Contract: every method is called on the thread of the call it reports (the event loop's
for ``LimiterClient``, any thread for ``SyncLimiterClient``), must not block or raise, and
should cost well under a microsecond. Labels stay bounded: a method name, a gRPC status
name, an outcome, a cause from gRPC's status names.
"""

from __future__ import annotations

from typing import Protocol

from ratelimit_client.decision import Reason

__all__ = ["LIMITER_BACKEND", "NO_METRICS", "OUTCOMES", "ClientMetrics", "NoClientMetrics"]

OUTCOMES: dict[Reason, str] = {
    Reason.WITHIN_LIMIT: "allowed",
    Reason.OVER_LIMIT: "denied",
    Reason.SHADOW_OVER_LIMIT: "shadow_denied",
    Reason.FAIL_OPEN: "fail_open",
    Reason.FAIL_CLOSED: "fail_closed",
    Reason.UNLIMITED: "unlimited",
    Reason.NOT_ALL_ALLOWED: "not_all_allowed",
}
"""A decision's ``outcome``, by its reason (the limiter's metrics use the same names)."""
LIMITER_BACKEND = "limiter_backend"
"""The failure-mode cause when the limiter answered ``FAIL_OPEN``/``FAIL_CLOSED`` itself
(its own backend was down); any other cause is the lower-cased gRPC status of the call."""


class ClientMetrics(Protocol):
    """What the client reports; see the module docstring for the contract."""

    def call(self, method: str, code: str, seconds: float, decisions: int) -> None:
        """A gRPC call of ``method`` (``ShouldAllow``, ``ShouldAllowBatch``, ``Reset``)
        ended with status ``code`` (a ``grpc.StatusCode`` name) after ``seconds``,
        carrying ``decisions`` decisions (0 for ``Reset``)."""
        ...

    def answered(self, reason: Reason, cause: str = "") -> None:
        """A decision was returned with ``reason``; ``cause`` is why the failure mode
        answered (``LIMITER_BACKEND`` or a status such as ``deadline_exceeded``), empty
        when the limiter decided."""
        ...

    def deny_cached(self) -> None:
        """The decision just ``answered`` (``OVER_LIMIT``) came from the deny cache, without
        a call (``ratelimit_client.deny_cache``)."""
        ...


class NoClientMetrics:
    """Records nothing."""

    def call(self, method: str, code: str, seconds: float, decisions: int) -> None:
        pass

    def answered(self, reason: Reason, cause: str = "") -> None:
        pass

    def deny_cached(self) -> None:
        pass


NO_METRICS = NoClientMetrics()
