"""Another FastAPI app using ``ratelimit_client.fastapi`` the way the README shows: per IP,
per API key, per user (the user id stands in for a real authentication dependency), per IP
under the limiter's other policies, and a deliberately misconfigured policy. Served by
uvicorn in the integration tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Header

from ratelimit_client import Decision
from ratelimit_client.fastapi import (
    RateLimit,
    api_key_header,
    client_ip,
    install_error_handler,
    rate_limit_lifespan,
)

app = FastAPI(lifespan=rate_limit_lifespan())
install_error_handler(app)

PerIp = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]
PerApiKey = Annotated[Decision, Depends(RateLimit(key=api_key_header("X-API-Key")))]
Login = Annotated[Decision, Depends(RateLimit(policy="login", key=client_ip))]
Burst = Annotated[Decision, Depends(RateLimit(policy="burst", key=client_ip))]


async def current_user_id(x_user_id: Annotated[str, Header()]) -> str:
    """Stand-in for real authentication: trusts a header (never do this in production)."""
    return x_user_id


async def user_key(user_id: Annotated[str, Depends(current_user_id)]) -> str:
    return f"user:{user_id}"


def _summary(decision: Decision) -> dict[str, object]:
    return {
        "reason": decision.reason.name,
        "remaining": decision.remaining,
        "window_s": decision.window_s,
    }


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ip")
async def per_ip(decision: PerIp) -> dict[str, object]:
    return _summary(decision)


@app.get("/apikey")
async def per_api_key(decision: PerApiKey) -> dict[str, object]:
    return _summary(decision)


@app.get("/login")
async def login(decision: Login) -> dict[str, object]:
    return _summary(decision)


@app.get("/burst")
async def burst(decision: Burst) -> dict[str, object]:
    return _summary(decision)


@app.get("/user", dependencies=[Depends(RateLimit(key=user_key))])
async def per_user() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/misconfigured", dependencies=[Depends(RateLimit(policy="no-such-policy"))])
async def misconfigured() -> dict[str, str]:
    return {"status": "unreachable"}
