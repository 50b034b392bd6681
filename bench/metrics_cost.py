"""What the limiter's metrics cost per decision, measured two ways.

1. **Recording**, in this process: the exact calls one RPC makes into
   ``limiter_service.metrics.PrometheusMetrics`` (its decisions, its RPC latency, one
   backend round trip, and the clock reads around them), repeated until the CPU time is
   well above the clock's resolution, per decision. A round trip per call overstates it
   for single calls, which share round trips under load. Stable to a few percent.
2. **End to end**: the limiter on Redis measured with metrics on and again with
   ``LIMITER_METRICS_LISTEN=`` (nothing recorded), the server's CPU per decision of each.
   The real thing, but on a shared 2-core machine its noise (several percent) is larger
   than the effect.

The share that counts is recording over the server's CPU per decision with metrics on: the
bench warns when it is above ``BUDGET`` (5 %).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from limiter_service.decision import Decision, Reason
from limiter_service.metrics import PrometheusMetrics

__all__ = ["BUDGET", "metrics_cost", "recording_us_per_decision"]

BUDGET = 0.05
_MIN_CPU_S = 0.2


def recording_us_per_decision(batch_size: int) -> float:
    """CPU microseconds that recording costs per decision, for calls of ``batch_size``."""
    metrics = PrometheusMetrics()
    decisions = [
        Decision(True, 1000, 500 + n, 0, 0, "default", Reason.WITHIN_LIMIT, 60_000_000)
        for n in range(batch_size)
    ]
    method = "ShouldAllow" if batch_size == 1 else "ShouldAllowBatch"
    clock = time.perf_counter
    calls = 0
    started = time.process_time()
    while (spent := time.process_time() - started) < _MIN_CPU_S:
        for _ in range(1000):
            rpc_started = clock()
            trip_started = clock()
            metrics.round_trip(clock() - trip_started, batch_size, True)
            metrics.decided(decisions)
            metrics.rpc(method, "OK", clock() - rpc_started)
        calls += 1000
    return spent * 1e6 / (calls * batch_size)


def metrics_cost(rows: Sequence[Any], on: str, off: str) -> dict[str, Any]:
    """For each method measured both with metrics (rows named ``on ...``) and without
    (``off ...``): recording's cost per decision and its share of the server's CPU per
    decision, and the two servers' CPU per decision. ``rows`` are ``ScenarioResult``s."""
    by_name = {row.name: row for row in rows}
    cost: dict[str, Any] = {}
    for row in rows:
        if not row.name.startswith(f"{on} "):
            continue
        method = row.name.removeprefix(f"{on} ")
        without = by_name.get(f"{off} {method}")
        if without is None or not row.server_cpu_us:
            continue
        recording = recording_us_per_decision(row.batch_size)
        cpu_on, cpu_off = row.server_cpu_us, without.server_cpu_us
        cost[method] = {
            "recording_us_per_decision": round(recording, 3),
            "server_cpu_us_per_decision": cpu_on,
            "share": round(recording / cpu_on, 4),
            "server_cpu_us_without_metrics": cpu_off,
            "measured_share": round((cpu_on - cpu_off) / cpu_on, 4) if cpu_off else None,
            "within_budget": recording / cpu_on <= BUDGET,
        }
    return cost
