"""The client's metrics hook: every decision by outcome (and a failure-mode answer by
cause), every gRPC call by method and status with the decisions it carried; the demo API
serves them at ``/metrics``."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from prometheus_client import CollectorRegistry

from devstack import scrape
from ratelimit_client import proto
from ratelimit_client.answers import Answers
from ratelimit_client.coalescing import CallCoalescer
from ratelimit_client.decision import Reason
from ratelimit_client.errors import RpcFailure
from ratelimit_client.metrics import OUTCOMES
from ratelimit_client.prometheus import PrometheusClientMetrics
from ratelimit_client.settings import FailureMode
from tests.api.api_stack import LIMIT, SharedStack, client
from tests.api.test_coalescing import Clock, HeldLimiter


def value(metrics: PrometheusClientMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_answers_count_outcomes_and_failure_causes() -> None:
    metrics = PrometheusClientMetrics(CollectorRegistry())
    answers = Answers(FailureMode.OPEN, metrics)
    R = proto.Reason
    for reason, allowed in (
        (R.REASON_WITHIN_LIMIT, True),
        (R.REASON_OVER_LIMIT, False),
        (R.REASON_SHADOW_OVER_LIMIT, True),
        (R.REASON_UNLIMITED, True),
        (R.REASON_FAIL_OPEN, True),
    ):
        answers.reply(proto.ShouldAllowResponse(allowed=allowed, reason=reason), "p")
    answers.failure(RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), "p")
    answers.failure(RpcFailure(grpc.StatusCode.UNAVAILABLE, "down"), "p")
    assert {
        outcome: value(metrics, "ratelimit_client_decisions_total", outcome=outcome)
        for outcome in ("allowed", "denied", "shadow_denied", "unlimited", "fail_open")
    } == {"allowed": 1, "denied": 1, "shadow_denied": 1, "unlimited": 1, "fail_open": 3}
    causes = "ratelimit_client_failure_mode_answers_total"
    assert value(metrics, causes, cause="limiter_backend") == 1
    assert value(metrics, causes, cause="deadline_exceeded") == 1
    assert value(metrics, causes, cause="unavailable") == 1


async def test_each_call_is_reported_with_the_decisions_it_carried() -> None:
    metrics = PrometheusClientMetrics(CollectorRegistry())
    limiter = HeldLimiter()
    coalescer = CallCoalescer(
        limiter.single, limiter.batch, timeout_s=5, max_in_flight=1, clock=Clock(), metrics=metrics
    )
    request = proto.ShouldAllowRequest(key="ip:1", policy="default")
    first = asyncio.ensure_future(coalescer.call(request))
    await limiter.arrived.wait()
    queued = [asyncio.ensure_future(coalescer.call(request)) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    limiter.release.set()
    await asyncio.gather(first, *queued)
    await coalescer.close()
    seconds = "ratelimit_client_call_duration_seconds_count"
    assert value(metrics, seconds, method="ShouldAllow", code="OK") == 1
    assert value(metrics, seconds, method="ShouldAllowBatch", code="OK") == 1
    assert value(metrics, "ratelimit_client_decisions_per_call_count") == 2
    assert value(metrics, "ratelimit_client_decisions_per_call_sum") == 6
    assert value(metrics, "ratelimit_client_decisions_per_call_bucket", le="1.0") == 1


@pytest.mark.integration
def test_the_demo_api_serves_its_client_metrics(shared_stack: SharedStack) -> None:
    demo = shared_stack.demo
    before = scrape(demo.address)
    ip = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    with client() as http:
        statuses = [
            http.get(f"{demo.url}/limited_endpoint", headers={"X-Real-IP": ip}).status_code
            for _ in range(LIMIT + 3)
        ]
        metrics = http.get(f"{demo.url}/metrics")
    assert statuses == [200] * LIMIT + [429] * 3
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "RateLimit" not in metrics.headers  # /metrics is never limited
    after = scrape(demo.address)

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert grew("ratelimit_client_decisions_total", outcome="allowed") == LIMIT
    assert grew("ratelimit_client_decisions_total", outcome="denied") == 3
    assert grew("ratelimit_client_decisions_total") == LIMIT + 3
    # The first denial is asked; the client's deny cache answers the next two without a call.
    assert grew("ratelimit_client_deny_cache_answers_total") == 2
    assert grew("ratelimit_client_decisions_per_call_sum") == LIMIT + 1
    calls = grew("ratelimit_client_call_duration_seconds_count", code="OK")
    assert 1 <= calls <= LIMIT + 3
    assert grew("ratelimit_client_failure_mode_answers_total") == 0
    assert ip not in after.text


def test_reason_names_cover_every_decision() -> None:
    assert set(OUTCOMES) == set(Reason) - {Reason.UNSPECIFIED}
