"""The demo API as a real uvicorn process in front of a real limiter: endpoints, headers,
429s, and whose budget a request is charged to."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.api_stack import LIMIT, WINDOW_S, SharedStack, client

pytestmark = pytest.mark.integration

POLICY_RE = re.compile(r'^"default";q=(\d+);w=(\d+)$')
RATELIMIT_RE = re.compile(r'^"default";r=(\d+);t=(\d+)$')


def _ratelimit(response: httpx.Response) -> tuple[int, int]:
    found = RATELIMIT_RE.match(response.headers["RateLimit"])
    assert found, response.headers["RateLimit"]
    return int(found.group(1)), int(found.group(2))


def _limited(http: httpx.Client, url: str, real_ip: str | None = None) -> httpx.Response:
    headers = {} if real_ip is None else {"X-Real-IP": real_ip}
    return http.get(f"{url}/limited_endpoint", headers=headers)


def test_unlimited_endpoints_name_the_replica(shared_stack: SharedStack) -> None:
    url = shared_stack.demo.url
    with client() as http:
        root = http.get(f"{url}/")
        health = http.get(f"{url}/health")
        hc = http.get(f"{url}/hc")
        missing = http.get(f"{url}/no-such-page")
    for response in (root, health, hc, missing):
        assert response.headers["X-Served-By"] == "api-1"
        assert "RateLimit" not in response.headers
    assert root.status_code == 200 and root.json()["served_by"] == "api-1"
    assert health.status_code == 200 and health.json() == {"status": "ok", "served_by": "api-1"}
    assert hc.status_code == 200 and hc.json() == "API-1 Health - OK"
    assert missing.status_code == 404 and missing.json()["served_by"] == "api-1"


def test_allowed_response_carries_well_formed_headers(shared_stack: SharedStack) -> None:
    with client() as http:
        response = _limited(http, shared_stack.demo.url, "198.51.100.1")
    assert response.status_code == 200
    assert response.json() == {"message": "Request allowed", "served_by": "api-1"}
    policy = POLICY_RE.match(response.headers["RateLimit-Policy"])
    assert policy, response.headers["RateLimit-Policy"]
    assert (int(policy.group(1)), int(policy.group(2))) == (LIMIT, WINDOW_S)
    remaining, reset_s = _ratelimit(response)
    assert remaining == LIMIT - 1
    assert 1 <= reset_s <= WINDOW_S
    assert "Retry-After" not in response.headers


def test_thirty_requests_give_ten_allowed_then_twenty_429(shared_stack: SharedStack) -> None:
    with client() as http:
        responses = [_limited(http, shared_stack.demo.url, "198.51.100.2") for _ in range(30)]
    assert [r.status_code for r in responses] == [200] * 10 + [429] * 20
    assert [_ratelimit(r)[0] for r in responses[:10]] == list(range(LIMIT - 1, -1, -1))
    for denied in responses[10:]:
        retry_after = denied.headers["Retry-After"]
        assert retry_after.isdigit() and int(retry_after) >= 1
        remaining, reset_s = _ratelimit(denied)
        assert remaining == 0
        assert reset_s == int(retry_after)
        assert POLICY_RE.match(denied.headers["RateLimit-Policy"])
        assert denied.json() == {
            "detail": "rate limit exceeded",
            "retry_after": int(retry_after),
            "served_by": "api-1",
        }


def test_x_real_ip_from_a_trusted_proxy_selects_the_budget(shared_stack: SharedStack) -> None:
    url = shared_stack.demo.url
    with client("127.0.0.1") as http:
        for _ in range(LIMIT):
            assert _limited(http, url, "198.51.100.3").status_code == 200
        assert _limited(http, url, "198.51.100.3").status_code == 429
        # Another client behind the same proxy has its own budget...
        assert _ratelimit(_limited(http, url, "198.51.100.4"))[0] == LIMIT - 1
        # ...and the other forwarding headers never choose one.
        forged = http.get(
            f"{url}/limited_endpoint",
            headers={
                "X-Real-IP": "198.51.100.3",
                "X-Forwarded-For": "198.51.100.5",
                "Forwarded": "for=198.51.100.5",
            },
        )
        assert forged.status_code == 429


@pytest.mark.parametrize(
    "forged",
    [
        {"X-Forwarded-For": "203.0.113.{n}"},
        {"X-Real-IP": "203.0.113.{n}"},
        {"Forwarded": "for=203.0.113.{n}"},
        {
            "X-Forwarded-For": "203.0.113.{n}, 10.0.0.{n}",
            "X-Real-IP": "203.0.113.{n}",
            "Forwarded": 'for="[2001:db8::{n}]"',
        },
    ],
    ids=["x-forwarded-for", "x-real-ip", "forwarded", "all-three"],
)
def test_forged_headers_from_an_untrusted_peer_do_not_change_the_budget(
    shared_stack: SharedStack, forged: dict[str, str], request: pytest.FixtureRequest
) -> None:
    # The strict API trusts only 127.0.0.1, so 127.0.0.x peers below are plain clients;
    # each parametrisation uses its own pair of source addresses.
    case = request.node.callspec.indices["forged"]
    attacker, bystander = f"127.0.0.{10 + 2 * case}", f"127.0.0.{11 + 2 * case}"
    url = shared_stack.strict.url
    with client(attacker) as http:
        statuses = [
            http.get(
                f"{url}/limited_endpoint",
                headers={name: value.format(n=n) for name, value in forged.items()},
            ).status_code
            for n in range(LIMIT + 5)
        ]
    assert statuses == [200] * LIMIT + [429] * 5
    with client(bystander) as http:
        assert _ratelimit(http.get(f"{url}/limited_endpoint"))[0] == LIMIT - 1


def test_strict_api_still_honours_its_one_trusted_proxy(shared_stack: SharedStack) -> None:
    url = shared_stack.strict.url
    with client("127.0.0.1") as http:
        first = _limited(http, url, "198.51.100.20")
        second = _limited(http, url, "198.51.100.20")
        other = _limited(http, url, "198.51.100.21")
    assert [_ratelimit(r)[0] for r in (first, second, other)] == [LIMIT - 1, LIMIT - 2, LIMIT - 1]
