"""``make stack ARGS='--edge envoy'``: the whole stack with Envoy in Nginx's place, over the
same API replicas. Envoy balances over both, limits ``/limited_endpoint`` by client address
with ``deploy/envoy/ratelimit.yaml`` (10 a minute, loaded by both limiters), answers 429
with its ``x-ratelimit-*`` headers past it, and tells the API who the client is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from devstack import Stack, StackConfig
from devstack.envoy_config import RATE_LIMIT_CLUSTER
from devstack.stack_config import API_SERVICES, ENVOY_SERVICE, services
from tests.e2e.edge import client, ensure_window_room

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        edge=ENVOY_SERVICE,
        # Decisions are counted here, not deadlines: a busy machine must not fail open.
        limiter_timeout_ms=2000,
        decision_timeout_ms=1500,
    )
    with Stack(tmp_path_factory.mktemp("envoy-stack"), config) as running:
        yield running


def test_envoy_replaces_nginx(stack: Stack) -> None:
    assert set(stack.processes()) == set(services(ENVOY_SERVICE))
    assert "nginx" not in stack.processes()
    assert stack.envoy.wait_healthy(RATE_LIMIT_CLUSTER, 2)
    with client() as http:
        served = Counter(http.get(f"{stack.edge_url}/").headers["X-Served-By"] for _ in range(20))
    assert set(served) == set(API_SERVICES), served


def test_envoy_limits_each_client_address_at_the_edge(stack: Stack) -> None:
    ensure_window_room(60, 10.0)
    with client("127.0.0.41") as http:
        responses = [http.get(f"{stack.edge_url}/limited_endpoint") for _ in range(12)]
    assert [r.status_code for r in responses] == [200] * 10 + [429] * 2
    assert [int(r.headers["x-ratelimit-remaining"]) for r in responses[:10]] == list(
        range(9, -1, -1)
    )
    denied = responses[-1]
    assert denied.headers["x-ratelimit-limit"].split(",")[0] == "10"
    assert denied.headers["x-envoy-ratelimited"] == "true"
    # Denied at the edge: the API never saw it (its own headers are missing).
    assert "x-served-by" not in denied.headers
    # The API charged the client Envoy named (X-Real-IP), not Envoy's own address: another
    # client still has its whole budget there too.
    assert responses[0].headers["RateLimit"].startswith('"default";r=9;')
    with client("127.0.0.42") as http:
        other = http.get(f"{stack.edge_url}/limited_endpoint")
    assert other.status_code == 200
    assert other.headers["RateLimit"].startswith('"default";r=9;')
