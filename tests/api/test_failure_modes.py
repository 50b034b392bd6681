"""No decision to be had: the limiter is unreachable, hung, or answers with its own failure
mode. Open lets requests through without rate-limit headers, closed answers 503; either way
within the deadline, and the outage is logged once, not per request; the app's ``/metrics``
counts each such answer by cause."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from devstack import ApiNode, LimiterNode, ProcessGroup, free_port, scrape, wait_until
from tests.api.api_stack import client, launch_api, launch_limiter, wait_apis

pytestmark = pytest.mark.integration

TIMEOUT_MS = 50  # the default LIMITER_TIMEOUT_MS, stated so the bound below is explicit
SLACK_S = 0.5  # generous: a shared CI machine is noisy
UNAVAILABLE_OPEN = "rate limiter unavailable, failing open"


@dataclass(frozen=True)
class FailureStack:
    open_dead: ApiNode  # LIMITER_ADDR has nobody listening, failure mode open
    closed_dead: ApiNode  # the same, failure mode closed
    limiter_says_closed: ApiNode  # limiter up, its Redis down, limiter's own mode closed
    limiter_says_open: ApiNode  # limiter up, its Redis down, its mode open; API closed
    hung_limiter: LimiterNode  # a healthy limiter the test may SIGSTOP
    hung_api: ApiNode  # failure mode open, in front of hung_limiter


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailureStack]:
    with ProcessGroup(tmp_path_factory.mktemp("api-failure")) as group:
        nobody = f"127.0.0.1:{free_port()}"
        redis_down = {"LIMITER_BACKEND": "redis", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        # Up, but NOT_SERVING: their backend is down, so they answer with their failure mode.
        says_closed = launch_limiter(
            group,
            "limiter-redis-down-closed",
            {**redis_down, "LIMITER_FAILURE_MODE": "closed"},
            wait_serving=False,
        )
        says_open = launch_limiter(
            group,
            "limiter-redis-down-open",
            {**redis_down, "LIMITER_FAILURE_MODE": "open"},
            wait_serving=False,
        )
        hung = launch_limiter(group, "limiter-hung", {})
        apis = FailureStack(
            open_dead=launch_api(group, "api-open-dead", {"LIMITER_ADDR": nobody}),
            closed_dead=launch_api(
                group,
                "api-closed-dead",
                {"LIMITER_ADDR": nobody, "LIMITER_FAILURE_MODE": "closed"},
            ),
            limiter_says_closed=launch_api(
                group, "api-limiter-closed", {"LIMITER_ADDR": says_closed.address}
            ),
            limiter_says_open=launch_api(
                group,
                "api-limiter-open",
                {"LIMITER_ADDR": says_open.address, "LIMITER_FAILURE_MODE": "closed"},
            ),
            hung_limiter=hung,
            # Recovery is logged on a reply from the limiter; once the key is over its
            # limit the client's deny cache would answer instead of asking.
            hung_api=launch_api(
                group, "api-hung", {"LIMITER_ADDR": hung.address, "LIMITER_DENY_CACHE_SIZE": "0"}
            ),
        )
        wait_apis(
            apis.open_dead,
            apis.closed_dead,
            apis.limiter_says_closed,
            apis.limiter_says_open,
            apis.hung_api,
        )
        yield apis


def _timed_get(http: httpx.Client, url: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = http.get(url)
    return response, time.perf_counter() - started


def _assert_open(response: httpx.Response, elapsed_s: float) -> None:
    assert response.status_code == 200
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers
    assert elapsed_s < TIMEOUT_MS / 1000 + SLACK_S


def _assert_closed(response: httpx.Response, elapsed_s: float, served_by: str) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "RateLimit" not in response.headers
    assert response.json() == {
        "detail": "rate limiter unavailable",
        "retry_after": 1,
        "served_by": served_by,
    }
    assert elapsed_s < TIMEOUT_MS / 1000 + SLACK_S


def test_unreachable_limiter_fails_open_fast_and_logs_once(stack: FailureStack) -> None:
    with client() as http:
        for _ in range(20):
            _assert_open(*_timed_get(http, f"{stack.open_dead.url}/limited_endpoint"))
        assert http.get(f"{stack.open_dead.url}/health").status_code == 200
    assert stack.open_dead.log().count(UNAVAILABLE_OPEN) == 1


def test_unreachable_limiter_fails_closed_with_503(stack: FailureStack) -> None:
    with client() as http:
        for _ in range(5):
            response, elapsed_s = _timed_get(http, f"{stack.closed_dead.url}/limited_endpoint")
            _assert_closed(response, elapsed_s, "api-closed-dead")
        assert http.get(f"{stack.closed_dead.url}/health").status_code == 200
    assert stack.closed_dead.log().count("rate limiter unavailable, failing closed") == 1


def test_limiter_answering_fail_closed_is_a_503(stack: FailureStack) -> None:
    with client() as http:
        response, elapsed_s = _timed_get(http, f"{stack.limiter_says_closed.url}/limited_endpoint")
    _assert_closed(response, elapsed_s, "api-limiter-closed")


def test_limiter_answering_fail_open_lets_the_request_through(stack: FailureStack) -> None:
    with client() as http:
        _assert_open(*_timed_get(http, f"{stack.limiter_says_open.url}/limited_endpoint"))


def test_hung_limiter_is_cut_off_at_the_deadline(stack: FailureStack) -> None:
    url = f"{stack.hung_api.url}/limited_endpoint"
    with client() as http:

        def decided() -> bool | None:
            return True if "RateLimit" in http.get(url).headers else None

        wait_until(decided, timeout=10, waiting_for="a counted decision through api-hung")
        log_before = len(stack.hung_api.log())
        stack.hung_limiter.process.signal(signal.SIGSTOP)
        try:
            for _ in range(5):
                _assert_open(*_timed_get(http, url))
        finally:
            stack.hung_limiter.process.signal(signal.SIGCONT)
        outage_log = stack.hung_api.log()[log_before:]
        assert outage_log.count(UNAVAILABLE_OPEN) == 1
        assert "DEADLINE_EXCEEDED" in outage_log

        def recovery_logged() -> bool | None:
            decided()
            return True if "answering again" in stack.hung_api.log()[log_before:] else None

        wait_until(recovery_logged, timeout=10, waiting_for="the recovery line after SIGCONT")


@pytest.mark.parametrize(
    ("api", "status", "outcome", "cause"),
    [
        ("limiter_says_open", 200, "fail_open", "limiter_backend"),
        ("limiter_says_closed", 503, "fail_closed", "limiter_backend"),
        ("closed_dead", 503, "fail_closed", "unavailable"),
    ],
)
def test_failure_mode_answers_are_counted_by_cause(
    stack: FailureStack, api: str, status: int, outcome: str, cause: str
) -> None:
    node: ApiNode = getattr(stack, api)
    before = scrape(node.address)
    with client() as http:
        statuses = [http.get(f"{node.url}/limited_endpoint").status_code for _ in range(4)]
    after = scrape(node.address)
    assert statuses == [status] * 4
    answers = "ratelimit_client_failure_mode_answers_total"
    assert after.total(answers, cause=cause) - before.total(answers, cause=cause) == 4
    assert after.total(answers) - before.total(answers) == 4
    decisions = "ratelimit_client_decisions_total"
    assert after.total(decisions, outcome=outcome) - before.total(decisions, outcome=outcome) == 4
    assert after.total(decisions) - before.total(decisions) == 4
