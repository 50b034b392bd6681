"""The limiter's rich error details over the wire: the client decodes them from a real gRPC
server's trailers (an in-process stand-in that answers as scripted), maps them by field and
reason alone, and a FastAPI app answers the matching HTTP status."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from fastapi import Depends, FastAPI
from google.rpc import error_details_pb2
from starlette.requests import Request

from ratelimit_client import FailureMode, LimiterClient, LimiterSettings, proto
from ratelimit_client.errors import ERROR_DOMAIN, RpcFailure, failure_from
from ratelimit_client.fastapi import RateLimit, install_error_handler, use_fake_limiter
from tests.api.stand_in import rich_status, serve

pytestmark = pytest.mark.integration

KEY_TOO_LONG = "key is 600 bytes; the maximum is 512"


def _violations(*fields: str) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=name, description="refused")
            for name in fields
        ]
    )


def _info(reason: str, domain: str = ERROR_DOMAIN) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=domain)


# What the stand-in answers, by the request's key.
STATUSES = {
    "key-violation": rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, KEY_TOO_LONG, _violations("key")
    ),
    "two-violations": rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, "bad", _violations("cost", "requests[2].key")
    ),
    "message-only": rich_status(grpc.StatusCode.INVALID_ARGUMENT, KEY_TOO_LONG),
    "cost-violation": rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, KEY_TOO_LONG, _violations("cost")
    ),
    "unknown-policy": rich_status(
        grpc.StatusCode.NOT_FOUND,
        "unknown policy 'nope'; known policies: default",
        _info("UNKNOWN_POLICY"),
    ),
    "foreign-info": rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", _info("QUOTA", "other.example")
    ),
    "backend-down": rich_status(
        grpc.StatusCode.UNAVAILABLE, "redis unreachable", _info("BACKEND_UNAVAILABLE")
    ),
}


def _answer(request: proto.ShouldAllowRequest) -> proto.ShouldAllowResponse | grpc.Status:
    status = STATUSES.get(request.key)
    if status is not None:
        return status
    return proto.ShouldAllowResponse(
        allowed=True,
        limit=10,
        remaining=9,
        policy=request.policy,
        reason=proto.Reason.REASON_WITHIN_LIMIT,
    )


@pytest.fixture
async def stand_in() -> AsyncIterator[str]:
    async with serve(_answer) as address:
        yield address


@pytest.mark.parametrize(
    ("key", "fields", "reason"),
    [
        ("key-violation", ("key",), ""),
        ("two-violations", ("cost", "requests[2].key"), ""),
        ("message-only", (), ""),
        ("unknown-policy", (), "UNKNOWN_POLICY"),
        ("foreign-info", (), ""),  # an ErrorInfo of another domain is not ours to read
    ],
)
async def test_failure_from_decodes_the_details_from_the_trailers(
    stand_in: str, key: str, fields: tuple[str, ...], reason: str
) -> None:
    async with grpc.aio.insecure_channel(stand_in) as channel:
        stub = proto.RateLimiterStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ShouldAllow(proto.ShouldAllowRequest(key=key), timeout=5)
    failure = failure_from(raised.value)
    expected = STATUSES[key]
    assert failure == RpcFailure(expected.code, expected.details, fields, reason)


async def case_key(request: Request) -> str:
    """The key is the case to script: the ``X-Case`` header."""
    return request.headers["x-case"]


@pytest.fixture
async def http(stand_in: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app limited through a real ``LimiterClient`` (failure mode closed) dialling the
    stand-in, driven in process."""
    app = FastAPI()
    install_error_handler(app)

    @app.get("/", dependencies=[Depends(RateLimit(policy="default", key=case_key))])
    async def limited() -> dict[str, str]:
        return {"status": "ok"}

    settings = LimiterSettings(
        limiter_addr=stand_in, timeout_ms=5000, failure_mode=FailureMode.CLOSED
    )
    client = LimiterClient(settings)
    use_fake_limiter(app, client, settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http
    finally:
        await client.close()


async def test_a_key_violation_is_a_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/", headers={"X-Case": "key-violation"})
    assert response.status_code == 400
    assert response.json() == {"detail": f"invalid rate-limit key: {KEY_TOO_LONG}"}


@pytest.mark.parametrize("case", ["message-only", "cost-violation"])
async def test_the_message_text_never_makes_a_400(http: httpx.AsyncClient, case: str) -> None:
    # The message starts with "key ", but no field violation names the key.
    response = await http.get("/", headers={"X-Case": case})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "server misconfiguration: rate-limit policy 'default' refused the request"
    }


async def test_an_unknown_policy_is_a_500_logged_with_the_limiters_words(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ratelimit_client")
    response = await http.get("/", headers={"X-Case": "unknown-policy"})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "server misconfiguration: rate-limit policy 'default' does not exist"
    }
    assert "Traceback" not in response.text
    assert "known policies: default" in caplog.text


async def test_a_status_from_grpc_itself_without_our_reason_is_a_400(
    http: httpx.AsyncClient,
) -> None:
    # RESOURCE_EXHAUSTED whose only ErrorInfo is another domain's: as if gRPC refused the
    # message, which only an oversized key can make it do.
    response = await http.get("/", headers={"X-Case": "foreign-info"})
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid rate-limit key: too large"}


async def test_a_backend_outage_is_the_failure_mode(http: httpx.AsyncClient) -> None:
    response = await http.get("/", headers={"X-Case": "backend-down"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"detail": "rate limiter unavailable", "retry_after": 1}
    allowed = await http.get("/", headers={"X-Case": "user:1"})
    assert allowed.status_code == 200
    assert allowed.headers["RateLimit"].startswith('"default";r=9;')
