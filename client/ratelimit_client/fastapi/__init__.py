"""The FastAPI integration (``pip install 'ratelimit-client[fastapi]'``)::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from ratelimit_client import Decision
    from ratelimit_client.fastapi import RateLimit, client_ip, rate_limit_lifespan

    app = FastAPI(lifespan=rate_limit_lifespan())
    Limited = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]

    @app.get("/items")
    async def items(decision: Limited) -> dict[str, int]:
        return {"remaining": decision.remaining}

In tests: ``use_fake_limiter(app, FakeLimiter(limit=2))`` (``ratelimit_client.testing``).
"""

from ratelimit_client.fastapi.dependency import RateLimit
from ratelimit_client.fastapi.errors import (
    InvalidRateLimitKey,
    LimiterUnavailable,
    RateLimitError,
    RateLimitExceeded,
    RateLimitMisconfigured,
    install_error_handler,
    rate_limit_error_handler,
)
from ratelimit_client.fastapi.keys import KeyFunc, api_key_header, client_ip
from ratelimit_client.fastapi.lifespan import (
    STATE_KEY,
    AsyncLimiter,
    RateLimitState,
    open_rate_limiter,
    rate_limit_lifespan,
    rate_limit_state,
    use_fake_limiter,
)

__all__ = [
    "STATE_KEY",
    "AsyncLimiter",
    "InvalidRateLimitKey",
    "KeyFunc",
    "LimiterUnavailable",
    "RateLimit",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitMisconfigured",
    "RateLimitState",
    "api_key_header",
    "client_ip",
    "install_error_handler",
    "open_rate_limiter",
    "rate_limit_error_handler",
    "rate_limit_lifespan",
    "rate_limit_state",
    "use_fake_limiter",
]
