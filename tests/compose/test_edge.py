"""Through Nginx's published ports, in containers: both API replicas in turn, the proof of
concept's 10 per 60 s for one client, and client-sent address headers changing nothing.

Every request from this host reaches Nginx from the network's gateway (the engine
masquerades forwarded loopback traffic), so all of them are one client. Each test that
counts therefore starts from empty counters (FLUSHALL on the master), and first makes
sure the fixed window cannot roll over under its burst.
"""

from __future__ import annotations

from collections import Counter

import httpx

from tests.compose.deployment import Deployment
from tests.e2e.edge import client, ensure_window_room, parse_ratelimit

API_REPLICAS = {"api-1", "api-2"}
BURST_ROOM_S = 10.0


def _fresh_budget(deployment: Deployment) -> str:
    """Empty the counters and leave room in the window; the master's service name."""
    master = deployment.redis.agreed_master()
    assert master is not None, "the Sentinels disagree on the master"
    deployment.redis.flush(master)
    ensure_window_room(deployment.settings.time_window_s, BURST_ROOM_S)
    return master


def _limited(http: httpx.Client, deployment: Deployment, **headers: str) -> httpx.Response:
    return http.get(f"{deployment.url}/limited_endpoint", headers=headers)


def test_both_ports_reach_both_replicas_in_turn(deployment: Deployment) -> None:
    for url in (deployment.url, deployment.alt_url):
        with client() as http:
            served = [http.get(f"{url}/").headers["X-Served-By"] for _ in range(20)]
        counts = Counter(served)
        assert set(counts) == API_REPLICAS, served
        assert min(counts.values()) >= 5, f"far from round-robin: {served}"


def test_ten_allowed_then_429_for_one_client(deployment: Deployment) -> None:
    _fresh_budget(deployment)
    limit = deployment.settings.rate_limit
    with client() as http:
        responses = [_limited(http, deployment) for _ in range(limit + 2)]
    assert [r.status_code for r in responses] == [200] * limit + [429] * 2
    remaining = [parse_ratelimit(r.headers["RateLimit"]).remaining for r in responses]
    assert remaining == [*range(limit - 1, -1, -1), 0, 0]
    assert {r.headers["X-Served-By"] for r in responses} == API_REPLICAS, (
        "both replicas answered, and still exactly the limit"
    )
    denied = responses[-1]
    assert (
        int(denied.headers["Retry-After"]) == parse_ratelimit(denied.headers["RateLimit"]).reset_s
    )
    assert denied.json()["detail"] == "rate limit exceeded"


def test_forged_client_headers_are_ignored(deployment: Deployment) -> None:
    master = _fresh_budget(deployment)
    limit = deployment.settings.rate_limit
    statuses = []
    with client() as http:
        for i in range(3 * limit):
            forged = f"198.51.100.{i}"
            response = _limited(
                http,
                deployment,
                **{
                    "X-Forwarded-For": f"{forged}, 203.0.113.{i}",
                    "X-Real-IP": forged,
                    "Forwarded": f"for={forged};proto=https",
                },
            )
            statuses.append(response.status_code)
    assert statuses == [200] * limit + [429] * (2 * limit)
    # One client counter, for the address Nginx saw; none for any address a client named.
    # (The limiters' health probes keep a counter of their own.)
    keys = [key for key in deployment.redis.keys(master) if "{__health__}" not in key]
    assert len(keys) == 1, keys
    assert "198.51.100." not in keys[0] and "203.0.113." not in keys[0], keys
