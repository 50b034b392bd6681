"""Starting and stopping the rate limiter with the app, and finding it from a request.

What the dependency needs at request time lives in one ``RateLimitState``, opened in the
app's lifespan and published as lifespan state under ``STATE_KEY`` (Starlette copies that
state into every request, mounted sub-apps included). Either let us own the lifespan::

    app = FastAPI(lifespan=rate_limit_lifespan())

or open it inside your own::

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        async with open_rate_limiter() as limiter:
            yield {STATE_KEY: limiter, ...your own state...}

In tests, ``use_fake_limiter(app, FakeLimiter())`` replaces the client for every request
of ``app`` (and ``rate_limit_lifespan`` then opens no real client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from ratelimit_client.aio import LimiterClient
from ratelimit_client.decision import Decision
from ratelimit_client.fastapi.client_ip import TrustedProxies
from ratelimit_client.fastapi.headers import HeaderCache
from ratelimit_client.metrics import NO_METRICS, ClientMetrics
from ratelimit_client.outage import OutageLog
from ratelimit_client.settings import LimiterSettings, load_limiter_settings

__all__ = [
    "STATE_KEY",
    "AsyncLimiter",
    "RateLimitState",
    "open_rate_limiter",
    "rate_limit_lifespan",
    "rate_limit_state",
    "use_fake_limiter",
]

STATE_KEY = "rate_limiter"
_OVERRIDE = "rate_limiter_override"


class AsyncLimiter(Protocol):
    """What the dependency needs of a client: ``LimiterClient`` and ``FakeLimiter`` fit."""

    @property
    def outages(self) -> OutageLog: ...

    async def decide(self, key: str, policy: str = "", cost: int = 1) -> Decision: ...

    async def connect(self, timeout_s: float = ...) -> bool: ...

    async def close(self) -> None: ...


class RateLimitState:
    """Everything per process: the settings, the client, the trusted proxies and the
    pre-encoded header parts (per policy, quota and window, as the limiter reports them).
    ``metrics`` goes to the ``LimiterClient`` created when no ``client`` is given."""

    def __init__(
        self,
        settings: LimiterSettings,
        client: AsyncLimiter | None = None,
        metrics: ClientMetrics = NO_METRICS,
    ) -> None:
        self.settings = settings
        self.client: AsyncLimiter = (
            client if client is not None else LimiterClient(settings, metrics=metrics)
        )
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)
        self.headers = HeaderCache()


@asynccontextmanager
async def open_rate_limiter(
    settings: LimiterSettings | None = None,
    *,
    client: AsyncLimiter | None = None,
    metrics: ClientMetrics = NO_METRICS,
) -> AsyncIterator[RateLimitState]:
    """Open the client (settings from the environment unless given; ``client`` instead of
    a ``LimiterClient``, e.g. a ``FakeLimiter``) and close it on exit; ``metrics``
    (``ratelimit_client.metrics``) hears of its calls and decisions.

    Raises ``ConfigError`` naming the env var when the environment is invalid. Waits up to
    ``CONNECT_TIMEOUT_S`` for a limiter replica, then starts anyway: a limiter that is down
    at start is an outage like any other.
    """
    state = RateLimitState(
        settings if settings is not None else load_limiter_settings(), client, metrics
    )
    try:
        await state.client.connect()
        yield state
    finally:
        await state.client.close()


def rate_limit_lifespan(
    settings: Callable[[], LimiterSettings] = load_limiter_settings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, object]]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that only runs the rate limiter;
    ``settings`` is called at start-up, not at import."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        override = getattr(app.state, _OVERRIDE, None)
        if override is not None:
            yield {STATE_KEY: override}
            return
        async with open_rate_limiter(settings()) as state:
            yield {STATE_KEY: state}

    return lifespan


def use_fake_limiter(
    app: FastAPI, client: AsyncLimiter, settings: LimiterSettings | None = None
) -> RateLimitState:
    """Answer every rate-limit decision of ``app`` with ``client`` (a ``FakeLimiter``),
    lifespan or not; returns the state it installed."""
    state = RateLimitState(settings if settings is not None else LimiterSettings(), client)
    setattr(app.state, _OVERRIDE, state)
    return state


def rate_limit_state(connection: HTTPConnection) -> RateLimitState:
    """The state for this request: a fake's if one is installed, else the lifespan's;
    raises ``RuntimeError`` if there is none."""
    override = getattr(connection.app.state, _OVERRIDE, None)
    if override is not None:
        return override  # type: ignore[no-any-return]
    try:
        state = connection.scope["state"][STATE_KEY]
    except KeyError:
        raise RuntimeError(
            f"no rate limiter in the lifespan state: open it with rate_limit_lifespan() or "
            f"yield {{{STATE_KEY!r}: ...}} from open_rate_limiter() in your lifespan"
        ) from None
    if not isinstance(state, RateLimitState):
        raise RuntimeError(f"lifespan state {STATE_KEY!r} is not a RateLimitState")
    return state
