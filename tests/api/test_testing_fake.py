"""``ratelimit_client.testing.FakeLimiter``: counting per key, policy and window on an
injected clock, scripted answers, and a FastAPI app tested with nothing but the fake (no
network, no limiter)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from ratelimit_client import (
    BatchItem,
    Decision,
    FailureMode,
    InvalidKey,
    LimiterSettings,
    Misconfigured,
    Reason,
)
from ratelimit_client.fastapi import (
    STATE_KEY,
    RateLimit,
    client_ip,
    install_error_handler,
    rate_limit_lifespan,
    use_fake_limiter,
)
from ratelimit_client.testing import Call, FakeLimiter


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- counting -----------------------------------------------------------------------------


def test_counts_per_key_in_a_fixed_window() -> None:
    clock = Clock(1003.5)  # 6.5 s before the 10 s window [1000, 1010) ends
    fake = FakeLimiter(limit=3, window_s=10, clock=clock)
    decisions = [fake.decide_now("user:1", "default") for _ in range(4)]
    assert decisions[:3] == [
        Decision(True, Reason.WITHIN_LIMIT, "default", 3, remaining, 7, 0, 10)
        for remaining in (2, 1, 0)
    ]
    assert decisions[3] == Decision(False, Reason.OVER_LIMIT, "default", 3, 0, 7, 7, 10)
    assert fake.decide_now("user:2", "default").remaining == 2  # another key, its own budget
    clock.now = 1010.0  # the next window
    assert fake.decide_now("user:1", "default") == Decision(
        True, Reason.WITHIN_LIMIT, "default", 3, 2, 10, 0, 10
    )


def test_policies_cost_and_the_recorded_calls() -> None:
    clock = Clock()
    fake = FakeLimiter(limit=10, window_s=60, clock=clock)
    fake.set_policy("burst", limit=3, window_s=1.5)
    burst = fake.decide_now("ip:1", "burst", cost=2)
    assert (burst.limit, burst.remaining, burst.window_s) == (3, 1, 2)  # 1.5 s rounds up
    over = fake.decide_now("ip:1", "burst", cost=2)
    assert (over.reason, over.remaining) == (Reason.OVER_LIMIT, 1)  # a denial costs nothing
    assert fake.decide_now("ip:1", "burst").remaining == 0
    assert fake.decide_now("ip:1").remaining == 9  # "" is the default policy, counted apart
    assert fake.calls == [
        Call("ip:1", "burst", 2),
        Call("ip:1", "burst", 2),
        Call("ip:1", "burst", 1),
        Call("ip:1", "default", 1),
    ]
    fake.clear()
    assert fake.calls == []
    assert fake.decide_now("ip:1", "burst").remaining == 2


async def test_async_and_sync_views_share_one_state() -> None:
    fake = FakeLimiter(limit=2, clock=Clock())
    assert (await fake.decide("k")).remaining == 1
    assert fake.sync().decide("k").remaining == 0
    assert not (await fake.decide("k")).allowed
    assert await fake.connect() is True
    await fake.close()


def test_limits_must_make_sense() -> None:
    with pytest.raises(ValueError, match="limit"):
        FakeLimiter(limit=-1)
    with pytest.raises(ValueError, match="window_s"):
        FakeLimiter(window_s=0)


# -- scripting ----------------------------------------------------------------------------


def test_scripted_answers_come_one_per_call_then_counting_resumes() -> None:
    fake = FakeLimiter(limit=5, window_s=60, clock=Clock())
    fake.push("deny", "fail", "invalid_key", "misconfigured")
    denied = fake.decide_now("k")
    assert (denied.allowed, denied.reason) == (False, Reason.OVER_LIMIT)
    assert fake.decide_now("k") == Decision(True, Reason.FAIL_OPEN, "default")
    assert fake.outages.total == 1
    with pytest.raises(InvalidKey):
        fake.decide_now("k")
    with pytest.raises(Misconfigured) as raised:
        fake.decide_now("k", "login")
    assert raised.value.detail == "rate-limit policy 'login' does not exist"
    # Nothing scripted consumed the budget.
    assert fake.decide_now("k").remaining == 4
    assert len(fake.calls) == 5


def test_allow_is_scripted_even_over_the_limit() -> None:
    fake = FakeLimiter(limit=0, clock=Clock())
    fake.push("allow")
    assert fake.decide_now("k").reason is Reason.WITHIN_LIMIT
    assert fake.decide_now("k").reason is Reason.OVER_LIMIT


def test_fail_under_the_closed_mode_denies() -> None:
    fake = FakeLimiter(failure_mode=FailureMode.CLOSED)
    fake.push("fail")
    assert fake.decide_now("k") == Decision(False, Reason.FAIL_CLOSED, "default", retry_after_s=1)
    assert fake.outages.mode == "closed"


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="maybe"):
        FakeLimiter().push("maybe")


# -- a FastAPI app tested with the fake alone ----------------------------------------------

Limited = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]


def _app() -> FastAPI:
    # The lifespan would build a real client from these settings: the fake must replace it.
    def no_real_limiter() -> LimiterSettings:
        raise AssertionError("the lifespan opened a real client despite the fake")

    app = FastAPI(lifespan=rate_limit_lifespan(no_real_limiter))
    install_error_handler(app)

    @app.get("/items")
    async def items(decision: Limited) -> dict[str, int]:
        return {"remaining": decision.remaining}

    return app


@pytest.fixture
def clock() -> Clock:
    return Clock(1020.0)  # the start of a 60 s window (17 x 60), so t=60


@asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        yield http


@pytest.fixture
def fake(clock: Clock) -> FakeLimiter:
    return FakeLimiter(limit=2, window_s=60, clock=clock)


@pytest.fixture
async def http(fake: FakeLimiter) -> AsyncIterator[httpx.AsyncClient]:
    app = _app()
    use_fake_limiter(app, fake)
    async with _serve(app) as client:
        yield client


async def test_allowed_requests_carry_the_ratelimit_headers(
    http: httpx.AsyncClient, fake: FakeLimiter
) -> None:
    response = await http.get("/items", headers={"X-Real-IP": "203.0.113.9"})
    assert response.status_code == 200
    assert response.json() == {"remaining": 1}
    assert response.headers["RateLimit-Policy"] == '"default";q=2;w=60'
    assert response.headers["RateLimit"] == '"default";r=1;t=60'
    assert "Retry-After" not in response.headers
    # The peer (127.0.0.1 under ASGITransport) is a trusted proxy: X-Real-IP is the key.
    assert fake.calls == [Call("ip:203.0.113.9", "default", 1)]


async def test_over_the_limit_is_a_429_with_retry_after(http: httpx.AsyncClient) -> None:
    statuses = [(await http.get("/items")).status_code for _ in range(2)]
    denied = await http.get("/items")
    assert statuses == [200, 200]
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == "60"
    assert denied.headers["RateLimit"] == '"default";r=0;t=60'
    assert denied.headers["RateLimit-Policy"] == '"default";q=2;w=60'
    assert denied.json() == {"detail": "rate limit exceeded", "retry_after": 60}


async def test_a_scripted_denial_is_a_429(http: httpx.AsyncClient, fake: FakeLimiter) -> None:
    fake.push("deny")
    assert (await http.get("/items")).status_code == 429
    assert (await http.get("/items")).json() == {"remaining": 1}


async def test_a_shadow_denial_lets_the_request_through_without_headers(
    http: httpx.AsyncClient, fake: FakeLimiter
) -> None:
    fake.push("shadow")
    response = await http.get("/items")
    assert response.status_code == 200
    assert "RateLimit" not in response.headers and "Retry-After" not in response.headers
    assert (await http.get("/items")).json() == {"remaining": 1}  # nothing was consumed


async def test_fail_under_the_open_mode_lets_the_request_through_uncounted(
    http: httpx.AsyncClient, fake: FakeLimiter
) -> None:
    fake.push("fail")
    response = await http.get("/items")
    assert response.status_code == 200
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers


async def test_fail_under_the_closed_mode_is_a_503(clock: Clock) -> None:
    fake = FakeLimiter(limit=2, clock=clock, failure_mode=FailureMode.CLOSED)
    fake.push("fail")
    app = _app()
    use_fake_limiter(app, fake)
    async with _serve(app) as http:
        response = await http.get("/items")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "RateLimit" not in response.headers
    assert response.json() == {"detail": "rate limiter unavailable", "retry_after": 1}


async def test_a_refused_key_is_a_400(http: httpx.AsyncClient, fake: FakeLimiter) -> None:
    fake.push("invalid_key")
    response = await http.get("/items", headers={"X-Real-IP": "203.0.113.9"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "invalid rate-limit key: key 'ip:203.0.113.9' refused (scripted)"
    }


async def test_a_misconfiguration_is_a_500(http: httpx.AsyncClient, fake: FakeLimiter) -> None:
    fake.push("misconfigured")
    response = await http.get("/items")
    assert response.status_code == 500
    assert response.json() == {
        "detail": "server misconfiguration: rate-limit policy 'default' does not exist"
    }


async def test_the_lifespan_opens_no_real_client_when_a_fake_is_installed(
    fake: FakeLimiter,
) -> None:
    app = _app()
    state = use_fake_limiter(app, fake)
    async with app.router.lifespan_context(app) as lifespan_state:
        assert lifespan_state == {STATE_KEY: state}
    assert state.client is fake


async def test_an_all_or_nothing_batch_of_the_fake_counts_nothing_when_one_is_denied() -> None:
    fake = FakeLimiter(limit=5, clock=Clock())
    fake.decide_now("b", cost=4)
    group = [BatchItem("a", cost=2), BatchItem("b", cost=2), BatchItem("a", cost=1)]
    denied = await fake.decide_batch(group, all_or_nothing=True)
    assert [(d.allowed, d.reason) for d in denied] == [
        (False, Reason.NOT_ALL_ALLOWED),
        (False, Reason.OVER_LIMIT),
        (False, Reason.NOT_ALL_ALLOWED),
    ]
    assert denied[0].remaining == 5 and denied[0].retry_after_s == denied[1].retry_after_s
    assert fake.decide_now("a", cost=5).allowed
    independent = fake.sync().decide_batch([BatchItem("c", cost=2), BatchItem("b", cost=2)])
    assert [d.reason for d in independent] == [Reason.WITHIN_LIMIT, Reason.OVER_LIMIT]
    admitted = fake.sync().decide_batch(
        [BatchItem("d", cost=2), BatchItem("d", cost=3)], all_or_nothing=True
    )
    assert [d.remaining for d in admitted] == [3, 0]
    fake.push("fail")
    failed = await fake.decide_batch([BatchItem("e"), BatchItem("f")], all_or_nothing=True)
    assert [d.reason for d in failed] == [Reason.FAIL_OPEN, Reason.FAIL_OPEN]
    assert fake.decide_now("e", cost=5).allowed
