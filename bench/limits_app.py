"""The edge bench's baseline: a FastAPI app limiting in-process with the ``limits`` library.

What a team would write without our service: every replica talks to Redis itself, through
Sentinel, with ``limits.aio.strategies.FixedWindowRateLimiter`` (a fixed window, like our
``default`` policy; ``limits`` starts the window at the key's first hit where ours aligns
it to the clock, which costs the same: one ``EVALSHA`` of an incr-with-expire script per
request). The client is the one our API charges: ``X-Real-IP`` from a trusted proxy, else
the peer (``api.client_ip``). Served exactly as the demo API is (``api.main.run``):
uvicorn with ``loop="auto"``, ``http="auto"``, one worker, no access log, no proxy
headers, no ``Server`` header.

=========================  ==========================================================
``GET /limited_endpoint``  200 ``{"message": ..., "served_by": ...}``, or 429
                           ``{"detail": ...}`` over the limit
``GET /health``            200, never limited
=========================  ==========================================================

====================  ==================  ==============================================
env var               default             meaning
====================  ==================  ==============================================
``SENTINEL_HOSTS``    (required)          ``host:port,host:port,...`` of the Sentinels
``REDIS_MASTER``      ``mymaster``        the name the Sentinels monitor the master under
``REDIS_PASSWORD``    empty               the data nodes' password (Sentinels get none)
``RATE_LIMIT``        ``10``              requests per window and client
``TIME_WINDOW``       ``60``              window, seconds
``TRUSTED_PROXIES``   ``127.0.0.0/8,::1``  peers whose ``X-Real-IP`` names the client
``API_INSTANCE``      ``limits``          name in bodies and ``X-Served-By``
``API_HOST``          ``127.0.0.1``       listen address
``API_PORT``          ``8000``            listen port
====================  ==================  ==============================================

Run with ``python -m bench.limits_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import quote

import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisSentinelStorage
from limits.aio.strategies import FixedWindowRateLimiter
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

from api.client_ip import TrustedProxies, resolve_client_ip
from api.main import DEMO_KEY, Replica, ServedBy
from api.settings import LimiterSettings

__all__ = ["LimitsAppSettings", "create_app", "run", "storage_uri"]

_STATE = "limits_app"


class LimitsAppSettings(BaseSettings):
    """Read from the environment (see the module docstring); keyword arguments use the
    env var names."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, frozen=True)

    sentinel_hosts: str = Field(min_length=1, validation_alias=AliasChoices("SENTINEL_HOSTS"))
    master: str = Field("mymaster", min_length=1, validation_alias=AliasChoices("REDIS_MASTER"))
    password: str = Field("", validation_alias=AliasChoices("REDIS_PASSWORD"))
    rate_limit: int = Field(10, ge=1, validation_alias=AliasChoices("RATE_LIMIT"))
    time_window: int = Field(60, ge=1, validation_alias=AliasChoices("TIME_WINDOW"))
    instance: str = Field("limits", min_length=1, validation_alias=AliasChoices("API_INSTANCE"))
    host: str = Field("127.0.0.1", min_length=1, validation_alias=AliasChoices("API_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=AliasChoices("API_PORT"))


def storage_uri(sentinel_hosts: str, master: str, password: str) -> str:
    """The ``limits`` URI of a Sentinel deployment:
    ``async+redis+sentinel://:password@host:port,host:port/master`` (no ``:password@``
    when ``password`` is empty; it is percent-encoded otherwise)."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"async+redis+sentinel://{auth}{sentinel_hosts}/{master}"


class _State:
    """Per process: the limiter, the one rate-limit item and how clients are told apart."""

    def __init__(self, settings: LimitsAppSettings) -> None:
        # ``limits`` sends the URI's password to the Sentinels too; ours require none and
        # would refuse an AUTH, hence the empty one in ``sentinel_kwargs``. Writes go to
        # the master only (``use_replicas`` matters for reads, which a fixed-window hit
        # does not do).
        self.storage = RedisSentinelStorage(
            storage_uri(settings.sentinel_hosts, settings.master, settings.password),
            implementation="redispy",
            use_replicas=False,
            sentinel_kwargs={"password": ""},
        )
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.item: RateLimitItem = RateLimitItemPerSecond(settings.rate_limit, settings.time_window)
        self.trusted = TrustedProxies(LimiterSettings().trusted_proxies)
        self.instance = settings.instance


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


def run() -> None:
    """Serve ``create_app()`` on ``API_HOST``:``API_PORT`` with the demo API's uvicorn
    settings."""
    settings = LimitsAppSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        proxy_headers=False,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    run()
