"""The end-to-end baseline: a FastAPI app limiting in-process with the ``limits`` library.

What a team would write without our service: every replica talks to Redis itself, through
Sentinel, with ``limits.aio.strategies.FixedWindowRateLimiter`` (a fixed window, like our
``default`` policy: one ``EVALSHA`` of an incr-with-expire script per request). The client
is the one our API charges: ``X-Real-IP`` from a trusted proxy, else the peer
(``ratelimit_client.fastapi.client_ip``). Served as the demo API is: ``python -m uvicorn
bench.edge.limits_app:app --loop auto --http auto --lifespan on --no-proxy-headers
--no-access-log --no-server-header --host H --port P`` (``bench.edge.baseline``).

``GET /limited_endpoint`` answers 200 ``{"message", "served_by"}``, or 429 over the limit;
``GET /health`` 200, never limited. Environment, read at start-up: ``SENTINEL_HOSTS``
(``host:port,...``, required), ``REDIS_MASTER`` (``mymaster``), ``REDIS_PASSWORD`` (the
data nodes'), ``SENTINEL_PASSWORD`` (the Sentinels', empty: none), ``RATE_LIMIT`` (10) per
``TIME_WINDOW`` (60 s) per
client, ``TRUSTED_PROXIES`` (loopback), ``API_INSTANCE`` (``limits``, in bodies and
``X-Served-By``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisSentinelStorage
from limits.aio.strategies import FixedWindowRateLimiter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

from api.main import DEMO_KEY, Replica, ServedBy
from ratelimit_client import load_limiter_settings
from ratelimit_client.fastapi.client_ip import TrustedProxies, resolve_client_ip

__all__ = ["LimitsAppSettings", "app", "create_app", "storage_uri"]

_STATE = "limits_app"


class LimitsAppSettings(BaseSettings):
    """Read from the environment (field name = env var, upper-cased)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    sentinel_hosts: str = Field(min_length=1)
    redis_master: str = Field("mymaster", min_length=1)
    redis_password: str = ""
    sentinel_password: str = ""
    rate_limit: int = Field(10, ge=1)
    time_window: int = Field(60, ge=1)
    api_instance: str = Field("limits", min_length=1)


def storage_uri(sentinel_hosts: str, master: str, password: str) -> str:
    """The ``limits`` URI of a Sentinel deployment:
    ``async+redis+sentinel://:password@host:port,host:port/master`` (no ``:password@``
    when ``password`` is empty; percent-encoded otherwise)."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"async+redis+sentinel://{auth}{sentinel_hosts}/{master}"


class _State:
    """Per process: the limiter, the one rate-limit item and how clients are told apart."""

    def __init__(self, settings: LimitsAppSettings) -> None:
        # ``limits`` sends the URI's password to the Sentinels too; ``sentinel_kwargs`` gives
        # them their own (an empty one sends no AUTH). A fixed-window hit only writes, so
        # replicas are not used.
        storage = RedisSentinelStorage(
            storage_uri(settings.sentinel_hosts, settings.redis_master, settings.redis_password),
            implementation="redispy",
            use_replicas=False,
            sentinel_kwargs={"password": settings.sentinel_password},
        )
        self.limiter = FixedWindowRateLimiter(storage)
        self.item = RateLimitItemPerSecond(settings.rate_limit, settings.time_window)
        self.trusted = TrustedProxies(load_limiter_settings().trusted_proxies)
        self.instance = settings.api_instance


def _state(request: Request) -> _State:
    state: _State = request.scope["state"][_STATE]
    return state


async def _charge(request: Request) -> None:
    state = _state(request)
    peer = request.client.host if request.client is not None else None
    client = resolve_client_ip(peer, request.headers.get("x-real-ip"), state.trusted)
    if not await state.limiter.hit(state.item, "ip", client):
        raise HTTPException(429, "rate limit exceeded")


Limited = Annotated[None, Depends(_charge)]


def create_app(settings: LimitsAppSettings | None = None) -> FastAPI:
    """The baseline app; settings not given are read from the environment at start-up
    (``pydantic.ValidationError`` when ``SENTINEL_HOSTS`` is missing)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        state = _State(settings if settings is not None else LimitsAppSettings())
        # The demo API's X-Served-By middleware reads its replica from this state key.
        replica = Replica(state.instance, (b"x-served-by", state.instance.encode("ascii")))
        yield {_STATE: state, DEMO_KEY: replica}

    app = FastAPI(title="limits baseline", lifespan=lifespan)
    app.add_middleware(ServedBy)

    @app.get("/limited_endpoint")
    async def limited_endpoint(request: Request, _: Limited) -> dict[str, str]:
        return {"message": "Request allowed", "served_by": _state(request).instance}

    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "ok", "served_by": _state(request).instance}

    return app


app = create_app()
