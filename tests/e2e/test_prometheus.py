"""A real Prometheus (the one ``make stack`` starts) scrapes both limiters and both API
replicas; after known traffic through Nginx, its HTTP API's query results match it.

Readiness is Prometheus's own: the stack starts once every target was scraped, and each
query is asked again until the scraped numbers include the traffic (never a sleep).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import Stack, StackConfig, wait_until
from devstack.prometheus import PrometheusNode
from tests.e2e.edge import client, ensure_window_room

pytestmark = pytest.mark.integration

LIMIT = 10
WINDOW_S = 3600
SENT = 14  # one client: LIMIT allowed, the rest denied
SCRAPED = {"limiter-1": "up", "limiter-2": "up", "api-1": "up", "api-2": "up"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        rate_limit=LIMIT,
        time_window=WINDOW_S,
        # Counted decisions, not deadlines, are under test: no fail-open on a busy machine.
        limiter_timeout_ms=2000,
        decision_timeout_ms=1500,
        scrape_interval="1s",
    )
    with Stack(tmp_path_factory.mktemp("prometheus"), config) as running:
        yield running


def by_label(prometheus: PrometheusNode, expression: str, label: str) -> dict[str, float]:
    return {
        dict(labels).get(label, ""): value for labels, value in prometheus.query(expression).items()
    }


def settled(
    prometheus: PrometheusNode, expression: str, label: str, total: float
) -> dict[str, float]:
    """The query's result by ``label``, once its values add up to ``total`` (the traffic
    scraped)."""

    def check() -> dict[str, float] | None:
        result = by_label(prometheus, expression, label)
        return result if sum(result.values()) == total else None

    return wait_until(
        check,
        timeout=30,
        waiting_for=f"prometheus to scrape {total} from {expression}",
        retry_on=(OSError, ValueError),
        watch=(prometheus.process,),
        interval=0.25,
    )


def test_prometheus_scrapes_every_limiter_and_api(stack: Stack) -> None:
    assert stack.prometheus.target_health() == SCRAPED
    up = by_label(stack.prometheus, "up", "service")
    assert up == dict.fromkeys(SCRAPED, 1.0)


def test_query_results_match_the_traffic_sent(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, 10.0)
    with client("127.0.0.7") as http:
        responses = [http.get(f"{stack.nginx_url}/limited_endpoint") for _ in range(SENT)]
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * LIMIT + [429] * (SENT - LIMIT)
    prometheus = stack.prometheus

    # Denials Nginx's edge deny cache answered never reached an API (the first 429 did, and
    # taught Nginx the rest); denials the APIs' deny caches answered never reached a
    # limiter; denials the limiters' caches answered never reached Redis (all three caches
    # are on by default).
    edge_cached = sum(response.headers.get("X-Edge-Cache") == "HIT" for response in responses)
    assert 1 <= edge_cached <= SENT - LIMIT - 1
    apis = settled(
        prometheus,
        'sum by (outcome) (ratelimit_client_decisions_total{job="api"})',
        "outcome",
        SENT - edge_cached,
    )
    assert {k: v for k, v in apis.items() if v} == {
        "allowed": LIMIT,
        "denied": SENT - LIMIT - edge_cached,
    }
    api_cached = int(
        sum(prometheus.query("sum(ratelimit_client_deny_cache_answers_total)").values())
    )
    assert 0 <= api_cached <= SENT - LIMIT - edge_cached - 1
    edge_and_api = edge_cached + api_cached
    limiters = settled(
        prometheus,
        'sum by (outcome) (ratelimit_decisions_total{job="limiter", policy="default"})',
        "outcome",
        SENT - edge_and_api,
    )
    assert {k: v for k, v in limiters.items() if v} == {
        "allowed": LIMIT,
        "denied": SENT - LIMIT - edge_and_api,
    }
    limiter_cached = int(sum(prometheus.query("sum(ratelimit_deny_cache_answers_total)").values()))

    # Every other decision crossed one gRPC call and one Redis round trip, and both
    # replicas of each took part (round robin at both hops).
    carried = by_label(
        prometheus, "sum by (service) (ratelimit_client_decisions_per_call_sum)", "service"
    )
    assert sum(carried.values()) == SENT - edge_and_api and set(carried) == {"api-1", "api-2"}
    tripped = by_label(
        prometheus,
        "sum by (service) (ratelimit_backend_decisions_per_round_trip_sum)",
        "service",
    )
    assert sum(tripped.values()) == SENT - edge_and_api - limiter_cached
    assert set(tripped) == {"limiter-1", "limiter-2"}
    calls = by_label(
        prometheus,
        'sum by (code) (ratelimit_client_call_duration_seconds_count{job="api"})',
        "code",
    )
    assert set(calls) == {"OK"} and 1 <= calls["OK"] <= SENT
    served = by_label(
        prometheus,
        'sum by (code) (ratelimit_rpc_duration_seconds_count{job="limiter"})',
        "code",
    )
    assert served == {"OK": calls["OK"]}
    # No failure-mode answer anywhere (a counter with no cause yet has no series at all).
    answers = prometheus.query("sum(ratelimit_client_failure_mode_answers_total)")
    assert sum(answers.values()) == 0
    assert by_label(prometheus, "ratelimit_backend_up", "service") == {
        "limiter-1": 1.0,
        "limiter-2": 1.0,
    }
    info = prometheus.query('ratelimit_policy_info{service="limiter-1"}')
    assert [dict(labels)["limit"] for labels in info] == [str(LIMIT)]
