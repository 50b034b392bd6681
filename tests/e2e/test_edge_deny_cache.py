"""The edge deny cache: Nginx repeats an API's ``OVER_LIMIT`` 429 for the same client and
route until the API's ``X-Accel-Expires`` runs out, and caches nothing else.

Real Nginx, API replicas, limiters and Redis (one stack for the module, failing closed so
the last test can see a fail-closed 503). Each test is its own client (its own 127.0.0.x).
Proof that Nginx answered is the API replicas' own decision counters (``/metrics``, read
directly from each replica) standing still, and Nginx's ``X-Edge-Cache: HIT``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack import Stack, StackConfig, wait_until
from devstack.stack_config import API_SERVICES, LIMITER_SERVICES
from tests.e2e.edge import client, ensure_window_room, parse_ratelimit

pytestmark = pytest.mark.integration

LIMIT = 3
WINDOW_S = 20
CAP_S = 5  # the demo's LIMITER_EDGE_DENY_MAX_S
# Room left in the window so that a denial's Retry-After (>= 8 s) gives the full cap.
ROOM_S = 12.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        rate_limit=LIMIT,
        time_window=WINDOW_S,
        failure_mode="closed",
        # Decisions are counted here: a busy machine must not turn one into a failure mode.
        limiter_timeout_ms=2000,
        decision_timeout_ms=1500,
    )
    with Stack(tmp_path_factory.mktemp("edge-deny-cache"), config) as running:
        yield running


def _decisions(stack: Stack) -> dict[str, float]:
    """Every API replica's ``ratelimit_client_decisions_total``, summed by outcome."""
    totals: dict[str, float] = {}
    for name in API_SERVICES:
        text = httpx.get(f"{stack.apis[name].url}/metrics", timeout=5.0).text
        for family in text_string_to_metric_families(text):
            if family.name != "ratelimit_client_decisions":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    outcome = sample.labels["outcome"]
                    totals[outcome] = totals.get(outcome, 0.0) + sample.value
    return totals


def _moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        outcome: after[outcome] - before.get(outcome, 0.0)
        for outcome in after
        if after[outcome] != before.get(outcome, 0.0)
    }


def _hit(response: httpx.Response) -> bool:
    return bool(response.headers.get("X-Edge-Cache") == "HIT")


def _assert_no_accel_headers(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert not [name for name in response.headers if name.lower().startswith("x-accel")]


def _url(stack: Stack) -> str:
    return f"{stack.nginx_url}/limited_endpoint"


def test_repeated_denials_are_answered_by_nginx(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, ROOM_S)
    before = _decisions(stack)
    with client("127.0.0.41") as http:
        responses = [http.get(_url(stack)) for _ in range(LIMIT + 8)]
        # Same route, same key: the query string does not change what the API charges.
        responses.append(http.get(_url(stack), params={"page": "2"}))
    assert [r.status_code for r in responses] == [200] * LIMIT + [429] * 9
    assert [_hit(r) for r in responses] == [False] * (LIMIT + 1) + [True] * 8
    # Only the first LIMIT + 1 reached an API replica.
    assert _moved(before, _decisions(stack)) == {"allowed": LIMIT, "denied": 1}
    first, cached = responses[LIMIT], responses[-1]
    assert cached.json() == first.json()
    assert int(first.headers["Retry-After"]) >= ROOM_S - 4
    _assert_no_accel_headers(responses)


def test_another_client_and_other_methods_are_unaffected(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, ROOM_S)
    with client("127.0.0.42") as denied:
        statuses = [denied.get(_url(stack)).status_code for _ in range(LIMIT + 2)]
        assert statuses == [200] * LIMIT + [429] * 2
        assert _hit(denied.get(_url(stack)))
        before = _decisions(stack)
        with client("127.0.0.43") as other:
            fresh = other.get(_url(stack))
        # HEAD is not a GET: Nginx passes it to the API (which does not serve HEAD here).
        head = denied.head(_url(stack))
    assert fresh.status_code == 200 and not _hit(fresh)
    assert head.status_code == 405 and not _hit(head)
    assert _moved(before, _decisions(stack)) == {"allowed": 1}
    _assert_no_accel_headers([fresh, head])


def test_allowed_responses_are_never_cached(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, ROOM_S)
    before = _decisions(stack)
    with client("127.0.0.44") as http:
        responses = [http.get(_url(stack)) for _ in range(LIMIT)]
    with client("127.0.0.45") as other:
        others = [other.get(_url(stack)) for _ in range(LIMIT)]
    for each in (responses, others):
        assert [r.status_code for r in each] == [200] * LIMIT
        assert not any(_hit(r) for r in each)
        remaining = [parse_ratelimit(r.headers["RateLimit"]).remaining for r in each]
        assert remaining == list(range(LIMIT - 1, -1, -1)), "each one counted by the limiter"
    assert _moved(before, _decisions(stack)) == {"allowed": 2 * LIMIT}
    _assert_no_accel_headers(responses + others)


def test_an_entry_expires_and_the_api_is_asked_again(stack: Stack) -> None:
    ensure_window_room(WINDOW_S, ROOM_S + CAP_S)
    with client("127.0.0.46") as http:
        statuses = [http.get(_url(stack)).status_code for _ in range(LIMIT + 1)]
        assert statuses == [200] * LIMIT + [429]
        assert _hit(http.get(_url(stack)))
        before = _decisions(stack)
        seen: list[httpx.Response] = []

        def asked_again() -> httpx.Response | None:
            response = http.get(_url(stack))
            seen.append(response)
            return None if _hit(response) else response

        # The entry lives at most CAP_S + 1 s (Nginx's whole-second clock).
        again = wait_until(
            asked_again, timeout=CAP_S + 3.0, waiting_for="the edge entry to expire", interval=0.2
        )
        assert again.status_code == 429, "still within the window: the API denies again"
        assert _moved(before, _decisions(stack)) == {"denied": 1}
        assert _hit(http.get(_url(stack))), "and Nginx repeats the fresh denial"
    _assert_no_accel_headers(seen)


def test_fail_closed_503_is_not_cached(stack: Stack) -> None:
    for name in LIMITER_SERVICES:
        stack.kill_limiter(name)
    try:
        before = _decisions(stack)
        with client("127.0.0.47") as http:
            responses = [http.get(_url(stack)) for _ in range(3)]
        assert [r.status_code for r in responses] == [503] * 3
        assert not any(_hit(r) for r in responses)
        assert _moved(before, _decisions(stack)) == {"fail_closed": 3}
        _assert_no_accel_headers(responses)
    finally:
        for name in LIMITER_SERVICES:
            if not stack.limiters[name].process.is_running():
                stack.restart_limiter(name)
