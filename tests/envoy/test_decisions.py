"""A real Envoy's ratelimit filter asking our limiter (``ShouldRateLimit``) for the limits
of ``envoy_limits.yaml``: 429 with Envoy's ``x-ratelimit-*`` headers past the limit,
shadow mode letting requests through while the limiter's metrics count them, an
``unlimited`` rule, and a request with two descriptors decided all or nothing.

One Redis, one limiter, one upstream and one Envoy for the module. Each test that counts
per client is its own client (its own 127.0.0.x source address); bursts first make sure
the minute's fixed window cannot roll over under them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

import httpx
import pytest

from devstack import LimiterNode, ProcessGroup, start_redis
from devstack.envoy import EnvoyNode
from devstack.envoy_config import RATE_LIMIT_CLUSTER, GenericKey, RemoteAddress, Route
from tests.e2e.edge import client, ensure_window_room
from tests.envoy.harness import DOMAIN, filter_stats, start_edge, start_limiters, start_upstream

pytestmark = pytest.mark.integration

WINDOW_S = 60
BURST_ROOM_S = 10.0
ROUTES = (
    Route("/limited", ((GenericKey("limited", key="route"), RemoteAddress()),)),
    Route("/shadow", ((GenericKey("shadow", key="route"),),)),
    Route("/unlimited", ((GenericKey("unlimited", key="route"),),)),
    Route("/pair-a", ((GenericKey("a", key="pair"),),)),
    Route("/pair", ((GenericKey("a", key="pair"),), (GenericKey("b", key="pair"),))),
    Route("/"),
)


class Edge(NamedTuple):
    envoy: EnvoyNode
    limiter: LimiterNode


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    workdir = tmp_path_factory.mktemp("envoy-decisions")
    with ProcessGroup(workdir / "logs") as group:
        redis = start_redis(group, workdir=workdir / "redis")
        (limiter,) = start_limiters(group, redis, 1)
        upstream = start_upstream(group)
        envoy = start_edge(
            group,
            workdir,
            limiters=[limiter.address],
            upstreams=[upstream.address],
            domain=DOMAIN,
            timeout_ms=5000,
            routes=ROUTES,
        )
        envoy.wait_healthy(RATE_LIMIT_CLUSTER, 1)
        yield Edge(envoy, limiter)


def _burst(
    envoy: EnvoyNode, path: str, count: int, source: str = "127.0.0.1"
) -> list[httpx.Response]:
    with client(source) as http:
        return [http.get(f"{envoy.url}{path}") for _ in range(count)]


def test_over_the_limit_is_429_with_envoys_headers(edge: Edge) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    before = filter_stats(edge.envoy)
    responses = _burst(edge.envoy, "/limited", 8, source="127.0.0.21")
    after = filter_stats(edge.envoy)

    assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in responses]
    assert remaining == [4, 3, 2, 1, 0, 0, 0, 0]
    for response in responses:
        assert response.headers["x-ratelimit-limit"].split(",")[0] == "5"
        assert 0 < int(response.headers["x-ratelimit-reset"]) <= WINDOW_S
    assert responses[-1].headers["x-envoy-ratelimited"] == "true"
    moved = {name: after[name] - before[name] for name in after}
    assert moved == {"ok": 5, "over_limit": 3, "error": 0, "failure_mode_allowed": 0}


def test_each_client_address_has_its_own_budget(edge: Edge) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    first = _burst(edge.envoy, "/limited", 6, source="127.0.0.22")
    second = _burst(edge.envoy, "/limited", 6, source="127.0.0.23")
    assert Counter(r.status_code for r in first) == {200: 5, 429: 1}
    assert Counter(r.status_code for r in second) == {200: 5, 429: 1}


def test_shadow_mode_lets_requests_through_and_the_metrics_count_them(edge: Edge) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    before = edge.limiter.metrics()
    responses = _burst(edge.envoy, "/shadow", 5)
    after = edge.limiter.metrics()

    assert [r.status_code for r in responses] == [200] * 5
    name = "ratelimit_envoy_decisions_total"
    moved = {
        outcome: after.total(name, domain=DOMAIN, outcome=outcome)
        - before.total(name, domain=DOMAIN, outcome=outcome)
        for outcome in ("allowed", "shadow_denied", "denied")
    }
    assert moved == {"allowed": 2, "shadow_denied": 3, "denied": 0}


def test_unlimited_is_never_limited(edge: Edge) -> None:
    responses = _burst(edge.envoy, "/unlimited", 20)
    assert {r.status_code for r in responses} == {200}
    assert "x-ratelimit-limit" not in responses[0].headers


def test_two_descriptors_are_decided_all_or_nothing(edge: Edge) -> None:
    """/pair asks for (pair=a) (limit 6) and (pair=b) (limit 3) at once. The fourth /pair
    request is over b's limit, so it consumes nothing, a's share included: a still has 3
    left for /pair-a (upstream would have counted it, leaving 2)."""
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    pairs = _burst(edge.envoy, "/pair", 5)
    singles = _burst(edge.envoy, "/pair-a", 5)

    assert [r.status_code for r in pairs] == [200] * 3 + [429] * 2
    # The header reports the descriptor closest to its limit: b's.
    assert [int(r.headers["x-ratelimit-remaining"]) for r in pairs] == [2, 1, 0, 0, 0]
    assert [r.status_code for r in singles] == [200] * 3 + [429] * 2
    assert [int(r.headers["x-ratelimit-remaining"]) for r in singles] == [2, 1, 0, 0, 0]
