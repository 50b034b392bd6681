"""How FastAPI sees ``RateLimit`` and the key functions (no network)."""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.params import Depends as DependsParam
from starlette.requests import Request

from ratelimit_client import Decision
from ratelimit_client.fastapi import RateLimit, api_key_header, client_ip


async def user_key() -> str:
    return "user:42"


# Module level: with postponed annotations FastAPI resolves the alias from module globals.
Limited = Annotated[Decision, Depends(RateLimit(key=user_key))]


def test_signature_resolves_the_key_through_its_dependency() -> None:
    limit = RateLimit(policy="login", key=user_key, cost=2)
    parameters = inspect.signature(limit).parameters
    assert list(parameters) == ["request", "response", "key"]
    default = parameters["key"].default
    assert isinstance(default, DependsParam) and default.dependency is user_key
    assert repr(limit) == "RateLimit(policy='login', key=user_key, cost=2)"
    assert RateLimit().key is client_ip


def test_usable_in_annotated_and_dependencies_styles() -> None:
    app = FastAPI()

    @app.get("/a")
    async def a(decision: Limited) -> None: ...

    @app.get("/b", dependencies=[Depends(RateLimit())])
    async def b() -> None: ...

    # The key is a sub-dependency, not a query parameter of the endpoint.
    assert "parameters" not in app.openapi()["paths"]["/a"]["get"]


def test_cost_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cost"):
        RateLimit(cost=0)


async def test_api_key_is_hashed_to_a_fixed_size_key() -> None:
    key = api_key_header("X-API-Key")

    def request(value: str) -> Request:
        return Request({"type": "http", "headers": [(b"x-api-key", value.encode())]})

    short, long = await key(request("secret")), await key(request("s" * 10_000))
    assert short.startswith("apikey:") and "secret" not in short
    assert len(short) == len(long) == len("apikey:") + 32
    assert short == await key(request("secret"))
    assert short != await key(request("secret2"))
