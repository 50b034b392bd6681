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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from api.client_ip import TrustedProxies
from api.headers import HeaderCache
from api.limiter_client import LimiterClient
from api.settings import LimiterSettings, load_limiter_settings

__all__ = [
    "STATE_KEY",
    "RateLimitState",
    "open_rate_limiter",
    "rate_limit_lifespan",
    "rate_limit_state",
]

STATE_KEY = "rate_limiter"


class RateLimitState:
    """Everything per process: the settings, the gRPC client, the trusted proxies and the
    pre-encoded header parts (per policy, quota and window, as the limiter reports them)."""

    def __init__(self, settings: LimiterSettings) -> None:
        self.settings = settings
        self.client = LimiterClient(settings)
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)
        self.headers = HeaderCache()


@asynccontextmanager
async def open_rate_limiter(
    settings: LimiterSettings | None = None,
) -> AsyncIterator[RateLimitState]:
    """Open the client (settings from the environment unless given) and close it on exit.

    Raises ``ConfigError`` naming the env var when the environment is invalid. Waits up to
    ``CONNECT_TIMEOUT_S`` for a limiter replica, then starts anyway: a limiter that is down
    at start is an outage like any other.
    """
    state = RateLimitState(settings if settings is not None else load_limiter_settings())
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
        async with open_rate_limiter(settings()) as state:
            yield {STATE_KEY: state}

    return lifespan


def rate_limit_state(connection: HTTPConnection) -> RateLimitState:
    """The state opened by the lifespan; raises ``RuntimeError`` if there is none."""
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
