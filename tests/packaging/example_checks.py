"""The user's test of ``example_app`` (run as ``test_example.py`` in a fresh venv): only
the testing fake, no limiter running, no lifespan needed."""

import asyncio

import httpx
from example_app import app  # type: ignore[import-not-found]  # beside it in the user's venv

from ratelimit_client.fastapi import use_fake_limiter
from ratelimit_client.testing import FakeLimiter


async def get_statuses(count: int) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        return [(await http.get("/items")).status_code for _ in range(count)]


def test_two_allowed_then_429() -> None:
    fake = FakeLimiter(limit=2, window_s=60)
    use_fake_limiter(app, fake)
    assert asyncio.run(get_statuses(3)) == [200, 200, 429]
    assert len(fake.calls) == 3 and fake.calls[0].key.startswith("ip:")


def test_scripted_failure_lets_the_request_through() -> None:
    fake = FakeLimiter(limit=0)
    fake.push("fail")
    use_fake_limiter(app, fake)
    assert asyncio.run(get_statuses(2)) == [200, 429]
