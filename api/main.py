"""The demo API: the proof of concept's endpoints behind the rate-limit dependency.

==========================  ===================================================
``GET /``                   not limited
``GET /limited_endpoint``   limited per client IP, policy ``default``
``GET /health``             liveness; never calls the limiter
``GET /hc``                 ``"API-1 Health - OK"`` (instance name upper-cased)
``GET /metrics``            Prometheus text: the rate-limit client's counters
                            (``ratelimit_client.prometheus``), never limited
==========================  ===================================================

Every JSON body and an ``X-Served-By`` header name the replica (``API_INSTANCE``), so
round-robin balancing is visible. Run with ``python -m api`` / ``api.main:run()``, or
``uvicorn api.main:app --no-proxy-headers`` (uvicorn's proxy-header support would otherwise
rewrite the peer address from ``X-Forwarded-For`` for peers in ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, NamedTuple

import uvicorn
from fastapi import Depends, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.demo_settings import DemoSettings, load_demo_limiter_settings, load_demo_settings
from ratelimit_client import Decision, LimiterSettings
from ratelimit_client.fastapi import (
    STATE_KEY,
    RateLimit,
    RateLimitError,
    client_ip,
    open_rate_limiter,
)
from ratelimit_client.prometheus import PrometheusClientMetrics

__all__ = ["app", "create_app", "run"]

DEMO_KEY = "demo"
Limited = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]


class Replica(NamedTuple):
    """Who is answering: the instance name and its pre-encoded ``X-Served-By`` header."""

    name: str
    header: tuple[bytes, bytes]


def _replica(request: Request) -> str:
    replica: Replica = request.scope["state"][DEMO_KEY]
    return replica.name


class ServedBy:
    """ASGI middleware adding ``X-Served-By`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = scope["state"][DEMO_KEY].header

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_header)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError(f"not an HTTPException: {exc!r}")
    body = exc.body() if isinstance(exc, RateLimitError) else {"detail": exc.detail}
    body["served_by"] = _replica(request)
    return JSONResponse(body, exc.status_code, headers=exc.headers)


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )


def create_app(
    settings: DemoSettings | None = None, limiter_settings: LimiterSettings | None = None
) -> FastAPI:
    """The demo app. Settings not given are read from the environment at start-up
    (``load_demo_settings``, ``load_demo_limiter_settings``). Its rate-limit client
    reports into a registry of the app's own, served at ``/metrics``."""
    registry = CollectorRegistry()
    metrics = PrometheusClientMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        _configure_logging()
        demo = settings if settings is not None else load_demo_settings()
        replica = Replica(demo.instance, (b"x-served-by", demo.instance.encode("ascii")))
        limits = limiter_settings if limiter_settings is not None else load_demo_limiter_settings()
        async with open_rate_limiter(limits, metrics=metrics) as limiter:
            yield {STATE_KEY: limiter, DEMO_KEY: replica}

    app = FastAPI(title="Rate-limit demo API", lifespan=lifespan)
    app.add_middleware(ServedBy)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.get("/")
    async def root(request: Request) -> dict[str, str]:
        return {
            "message": "Rate-limit demo; GET /limited_endpoint is limited per client IP",
            "served_by": _replica(request),
        }

    @app.get("/limited_endpoint")
    async def limited_endpoint(request: Request, decision: Limited) -> dict[str, str]:
        return {"message": "Request allowed", "served_by": _replica(request)}

    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "ok", "served_by": _replica(request)}

    @app.get("/hc")
    async def hc(request: Request) -> str:
        return f"{_replica(request).upper()} Health - OK"

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


app = create_app()


def run() -> None:
    """Console script: serve ``app`` on ``API_HOST``:``API_PORT``.

    uvloop and httptools are used when installed (uvicorn's ``auto``), h11 otherwise.
    Uvicorn's proxy-header rewriting is off: ``X-Real-IP`` from ``TRUSTED_PROXIES`` is the
    only way a proxy names the client. Access log only with ``API_ACCESS_LOG=true``.
    """
    settings = load_demo_settings()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        proxy_headers=False,
        access_log=settings.access_log,
        server_header=False,
    )
