"""The dependency in another app (``ratelimit_example_app.py``): pluggable keys, each
policy advertised with the window the limiter reports, and the limiter's refusals turned
into clear HTTP errors."""

from __future__ import annotations

import pytest

from tests.api.api_stack import LIMIT, POLICY_ITEMS, WINDOW_S, SharedStack, client

pytestmark = pytest.mark.integration


def test_api_keys_have_separate_budgets(shared_stack: SharedStack) -> None:
    url = shared_stack.example.url
    with client() as http:
        first = [
            http.get(f"{url}/apikey", headers={"X-API-Key": "key-a"}).status_code
            for _ in range(LIMIT + 1)
        ]
        other = http.get(f"{url}/apikey", headers={"X-API-Key": "key-b"})
    assert first == [200] * LIMIT + [429]
    assert other.status_code == 200
    assert other.json() == {"reason": "WITHIN_LIMIT", "remaining": LIMIT - 1, "window_s": WINDOW_S}


def test_missing_api_key_is_charged_to_the_client_ip(shared_stack: SharedStack) -> None:
    url = shared_stack.example.url
    headers = {"X-Real-IP": "198.51.100.30"}
    with client() as http:
        by_key = http.get(f"{url}/apikey", headers=headers)
        by_ip = http.get(f"{url}/ip", headers=headers)
    assert by_key.json()["remaining"] == LIMIT - 1
    assert by_ip.json()["remaining"] == LIMIT - 2


@pytest.mark.parametrize(
    ("path", "policy", "window_s", "real_ip"),
    [
        ("/ip", "default", WINDOW_S, "198.51.100.40"),
        ("/login", "login", 90, "198.51.100.41"),
        ("/burst", "burst", 2, "198.51.100.42"),  # a 1500ms window, rounded up
    ],
)
def test_each_policy_advertises_the_window_the_limiter_reports(
    shared_stack: SharedStack, path: str, policy: str, window_s: int, real_ip: str
) -> None:
    # Only the limiter's policies file decides q and w: the API has no setting for either.
    url, headers = f"{shared_stack.example.url}{path}", {"X-Real-IP": real_ip}
    with client() as http:
        responses = [http.get(url, headers=headers) for _ in range(LIMIT + 1)]
    allowed = responses[0]
    assert allowed.status_code == 200
    assert allowed.json()["window_s"] == window_s
    assert allowed.headers["RateLimit"].startswith(f'"{policy}";r=')
    # Every policy's quota is at most LIMIT, so some request was denied (not necessarily
    # the last: the token bucket drips a unit back every 0.5 s).
    denied = [response for response in responses if response.status_code == 429]
    assert denied, [response.status_code for response in responses]
    for response in (allowed, denied[0]):
        assert response.headers["RateLimit-Policy"] == POLICY_ITEMS[policy]


def test_user_key_from_a_dependency(shared_stack: SharedStack) -> None:
    with client() as http:
        response = http.get(f"{shared_stack.example.url}/user", headers={"X-User-Id": "42"})
    assert response.status_code == 200
    assert (
        response.headers["RateLimit"]
        == f'"default";r={LIMIT - 1};t=' + (response.headers["RateLimit"].rsplit("=", 1)[1])
    )


def test_oversized_client_supplied_key_is_a_400(shared_stack: SharedStack) -> None:
    with client() as http:
        response = http.get(f"{shared_stack.example.url}/user", headers={"X-User-Id": "u" * 600})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "invalid rate-limit key: key is 605 bytes; the maximum is 512"
    }


def test_unknown_policy_is_a_500_with_a_clear_detail_logged_once(
    shared_stack: SharedStack,
) -> None:
    with client() as http:
        responses = [http.get(f"{shared_stack.example.url}/misconfigured") for _ in range(3)]
    for response in responses:
        assert response.status_code == 500
        assert response.json() == {
            "detail": "server misconfiguration: rate-limit policy 'no-such-policy' does not exist"
        }
        assert "Traceback" not in response.text
    log = shared_stack.example.log()
    assert log.count("rate limiting misconfigured") == 1
    assert "known policies: default, login, burst" in log
