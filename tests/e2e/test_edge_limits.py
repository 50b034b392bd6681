"""The whole stack, through Nginx, with the proof of concept's limit of 10 per 60 s per client:
balancing, exact limits across replicas, one budget per client that no header can move,
well-formed rate-limit headers, and Nginx's own errors in JSON.

One stack for the module. Each test is its own client (its own 127.0.0.x source address),
so budgets never collide; bursts first make sure the fixed window cannot roll over under
them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from devstack import Stack, StackConfig
from devstack.stack_config import API_SERVICES, LIMITER_SERVICES, NGINX_SERVICE
from tests.e2e.compose import ENVSUBST_SETTINGS, compose_env_names, load_compose
from tests.e2e.edge import client, ensure_window_room, parse_ratelimit

pytestmark = pytest.mark.integration

LIMIT = 10
WINDOW_S = 60
BURST_ROOM_S = 10.0  # a burst of 30 requests takes well under a second; this is slack
POLICY_FIELD = f'"default";q={LIMIT};w={WINDOW_S}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        rate_limit=LIMIT,
        time_window=WINDOW_S,
        # These tests count decisions: a busy machine must not turn one into a fail-open.
        # Deadlines have their own tests (tests/api, tests/integration).
        limiter_timeout_ms=2000,
        decision_timeout_ms=1500,
    )
    with Stack(tmp_path_factory.mktemp("edge-limits"), config) as running:
        yield running


def _burst(stack: Stack, source: str, count: int, **headers: str) -> list[httpx.Response]:
    with client(source) as http:
        return [
            http.get(f"{stack.nginx_url}/limited_endpoint", headers=headers) for _ in range(count)
        ]


def test_requests_are_balanced_over_both_replicas(stack: Stack) -> None:
    with client() as http:
        served = Counter(http.get(f"{stack.nginx_url}/").headers["X-Served-By"] for _ in range(20))
    assert set(served) == set(API_SERVICES), served
    assert min(served.values()) >= 5, f"far from round-robin: {served}"


def test_exactly_the_limit_across_replicas(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    responses = _burst(stack, "127.0.0.11", 30)
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * LIMIT + [429] * (30 - LIMIT)
    served = {response.headers["X-Served-By"] for response in responses}
    assert served == set(API_SERVICES), "both replicas took part, and still exactly 10"


def test_each_client_has_its_own_budget(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    seen: dict[str, list[int]] = {"127.0.0.2": [], "127.0.0.3": []}
    with client("127.0.0.2") as first, client("127.0.0.3") as second:
        for _ in range(LIMIT + 3):
            for source, http in (("127.0.0.2", first), ("127.0.0.3", second)):
                seen[source].append(http.get(f"{stack.nginx_url}/limited_endpoint").status_code)
    for source, statuses in seen.items():
        assert statuses == [200] * LIMIT + [429] * 3, source


def test_forged_client_headers_change_nothing(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    with client("127.0.0.4") as http:
        statuses = []
        for i in range(30):
            forged = f"198.51.100.{i}"
            response = http.get(
                f"{stack.nginx_url}/limited_endpoint",
                headers={
                    "X-Forwarded-For": f"{forged}, 203.0.113.{i}",
                    "X-Real-IP": "127.0.0.44" if i % 2 else forged,
                    "Forwarded": f"for={forged};proto=https",
                },
            )
            statuses.append(response.status_code)
    assert statuses == [200] * LIMIT + [429] * (30 - LIMIT)
    # The address named in the forged X-Real-IP was not charged either.
    (untouched,) = _burst(stack, "127.0.0.44", 1)
    assert parse_ratelimit(untouched.headers["RateLimit"]).remaining == LIMIT - 1


def test_rate_limit_headers_are_well_formed_and_consistent(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, BURST_ROOM_S)
    responses = _burst(stack, "127.0.0.5", LIMIT + 2)
    allowed, denied = responses[:LIMIT], responses[LIMIT:]
    for index, response in enumerate(allowed):
        assert response.status_code == 200
        assert response.headers["RateLimit-Policy"] == POLICY_FIELD
        field = parse_ratelimit(response.headers["RateLimit"])
        assert field.policy == "default"
        assert field.remaining == LIMIT - 1 - index
        assert 0 < field.reset_s <= WINDOW_S
        assert "Retry-After" not in response.headers
    for response in denied:
        assert response.status_code == 429
        assert response.headers["RateLimit-Policy"] == POLICY_FIELD
        field = parse_ratelimit(response.headers["RateLimit"])
        assert field.remaining == 0
        retry_after = int(response.headers["Retry-After"])
        assert retry_after == field.reset_s
        assert 1 <= retry_after <= WINDOW_S
        # The API's own answer, passed through by Nginx untouched.
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body["detail"] == "rate limit exceeded"
        assert body["retry_after"] == retry_after
        assert body["served_by"] == response.headers["X-Served-By"]


def test_running_services_get_the_env_names_compose_sets(stack: Stack) -> None:
    compose = load_compose()
    for name in (*LIMITER_SERVICES, *API_SERVICES):
        assert set(stack.service_env(name)) == compose_env_names(compose, name), name
    nginx = compose_env_names(compose, NGINX_SERVICE) - ENVSUBST_SETTINGS
    assert set(stack.service_env(NGINX_SERVICE)) == nginx


def test_replica_metrics_are_not_published_through_nginx(stack: Stack) -> None:
    api = stack.apis[API_SERVICES[0]]
    with client() as http:
        direct = http.get(f"{api.url}/metrics")
        through_nginx = http.get(f"{stack.nginx_url}/metrics")
    assert direct.status_code == 200 and "ratelimit_client_" in direct.text
    assert through_nginx.status_code == 404
    assert "ratelimit_client_" not in through_nginx.text


def test_nginx_answers_json_when_no_replica_can(stack: Stack) -> None:
    """Last in the module: it leaves both API replicas dead."""
    for name in API_SERVICES:
        stack.kill_api(name)
    with client() as http:
        for path in ("/", "/limited_endpoint"):
            response = http.get(f"{stack.nginx_url}{path}")
            assert response.status_code == 502
            assert response.headers["Content-Type"] == "application/json"
            assert "bad gateway" in response.json()["detail"]
