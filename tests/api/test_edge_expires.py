"""``X-Accel-Expires`` on the dependency's 429s: the computation, the setting, and which
answers carry it (no network: the fake limiter, an injected clock)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI

from api.demo_settings import DEMO_EDGE_DENY_MAX_S, load_demo_limiter_settings
from ratelimit_client import ConfigError, Decision, FailureMode, LimiterSettings, Reason
from ratelimit_client.fastapi import RateLimit, install_error_handler, use_fake_limiter
from ratelimit_client.fastapi.headers import edge_expires_s
from ratelimit_client.testing import FakeLimiter


def _denied(retry_after_s: int, reason: Reason = Reason.OVER_LIMIT) -> Decision:
    return Decision(False, reason, "default", 10, 0, retry_after_s, retry_after_s, 60)


@pytest.mark.parametrize(
    ("retry_after_s", "max_s", "expected"),
    [
        (60, 5, 5),  # capped
        (6, 5, 4),  # T in (5, 6]: 5 whole seconds certain, one given to Nginx's clock
        (7, 5, 5),
        (4, 30, 2),
        (3, 30, 1),
        (2, 30, 0),  # T in (1, 2]: nothing left once Nginx's second is paid
        (1, 30, 0),
        (60, 0, 0),  # 0 turns it off
        (60, 1, 1),
    ],
)
def test_seconds_are_the_certain_whole_seconds_capped(
    retry_after_s: int, max_s: int, expected: int
) -> None:
    assert edge_expires_s(_denied(retry_after_s), max_s) == expected


@pytest.mark.parametrize(
    "reason",
    [
        Reason.WITHIN_LIMIT,
        Reason.FAIL_OPEN,
        Reason.FAIL_CLOSED,
        Reason.SHADOW_OVER_LIMIT,
        Reason.UNLIMITED,
        Reason.NOT_ALL_ALLOWED,
    ],
)
def test_only_an_over_limit_denial_may_be_repeated(reason: Reason) -> None:
    assert edge_expires_s(_denied(60, reason), 5) == 0


def test_setting_defaults_off_and_reads_its_env_var() -> None:
    assert LimiterSettings().edge_deny_max_s == 0
    assert LimiterSettings.from_env({"LIMITER_EDGE_DENY_MAX_S": " 7 "}).edge_deny_max_s == 7
    with pytest.raises(ConfigError, match="LIMITER_EDGE_DENY_MAX_S"):
        LimiterSettings.from_env({"LIMITER_EDGE_DENY_MAX_S": "-1"})
    with pytest.raises(ConfigError, match="LIMITER_EDGE_DENY_MAX_S"):
        LimiterSettings.from_env({"LIMITER_EDGE_DENY_MAX_S": "soon"})


def test_the_demo_turns_it_on_unless_told_otherwise() -> None:
    assert load_demo_limiter_settings({}).edge_deny_max_s == DEMO_EDGE_DENY_MAX_S == 5
    off = load_demo_limiter_settings({"LIMITER_EDGE_DENY_MAX_S": "0"})
    assert off.edge_deny_max_s == 0


def test_dependency_refuses_an_out_of_range_cap() -> None:
    with pytest.raises(ValueError, match="edge_deny_max_s"):
        RateLimit(edge_deny_max_s=-1)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_040.0  # 40 s left in its 60 s window

    def __call__(self) -> float:
        return self.now


def _app(
    fake: FakeLimiter, settings: LimiterSettings, edge_deny_max_s: int | None = None
) -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handler(app)
    limited = RateLimit(edge_deny_max_s=edge_deny_max_s)

    @app.get("/limited", dependencies=[Depends(limited)])
    async def limited_endpoint() -> dict[str, str]:
        return {"ok": "yes"}

    use_fake_limiter(app, fake, settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")


async def test_the_header_goes_on_over_limit_429s_only() -> None:
    fake = FakeLimiter(limit=1, window_s=60, clock=_Clock())
    http = _app(fake, LimiterSettings(edge_deny_max_s=5))
    allowed = await http.get("/limited")
    assert allowed.status_code == 200 and "x-accel-expires" not in allowed.headers
    denied = await http.get("/limited")
    assert denied.status_code == 429
    assert denied.headers["x-accel-expires"] == "5"
    assert denied.headers["retry-after"] == "40"
    fake.push("shadow")
    assert "x-accel-expires" not in (await http.get("/limited")).headers


async def test_a_short_retry_after_is_not_capped_but_cut() -> None:
    clock = _Clock()
    fake = FakeLimiter(limit=1, window_s=60, clock=clock)
    http = _app(fake, LimiterSettings(edge_deny_max_s=30))
    assert (await http.get("/limited")).status_code == 200
    clock.now += 36.5  # T = 3.5 s: Retry-After 4, X-Accel-Expires 2
    denied = await http.get("/limited")
    assert denied.headers["retry-after"] == "4"
    assert denied.headers["x-accel-expires"] == "2"
    clock.now += 2  # T = 1.5 s: nothing to give Nginx
    denied = await http.get("/limited")
    assert denied.status_code == 429 and "x-accel-expires" not in denied.headers


async def test_fail_closed_503_never_carries_it() -> None:
    fake = FakeLimiter(limit=1, failure_mode=FailureMode.CLOSED, clock=_Clock())
    http = _app(fake, LimiterSettings(edge_deny_max_s=5, failure_mode=FailureMode.CLOSED))
    fake.push("fail")
    unavailable = await http.get("/limited")
    assert unavailable.status_code == 503 and "x-accel-expires" not in unavailable.headers


async def test_the_route_option_overrides_the_setting() -> None:
    fake = FakeLimiter(limit=0, clock=_Clock())
    default = await _app(fake, LimiterSettings()).get("/limited")
    assert default.status_code == 429 and "x-accel-expires" not in default.headers
    on = await _app(fake, LimiterSettings(), edge_deny_max_s=3).get("/limited")
    assert on.headers["x-accel-expires"] == "3"
    off = await _app(fake, LimiterSettings(edge_deny_max_s=5), edge_deny_max_s=0).get("/limited")
    assert off.status_code == 429 and "x-accel-expires" not in off.headers
