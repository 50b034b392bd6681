"""A FastAPI dependency that rate-limits requests through the ``ratelimit.v1`` gRPC service.

Import from here; the submodules are the implementation. In an app::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from api import Decision, RateLimit, client_ip, install_error_handler, rate_limit_lifespan

    app = FastAPI(lifespan=rate_limit_lifespan())
    install_error_handler(app)
    Limited = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]

    @app.get("/items")
    async def items(decision: Limited) -> dict[str, int]:
        return {"remaining": decision.remaining}

``api.main`` is the demo service built this way.
"""

from api.decision import Decision, Reason
from api.dependency import RateLimit
from api.errors import (
    InvalidRateLimitKey,
    LimiterUnavailable,
    RateLimitError,
    RateLimitExceeded,
    RateLimitMisconfigured,
    install_error_handler,
    rate_limit_error_handler,
)
from api.keys import KeyFunc, api_key_header, client_ip
from api.lifespan import (
    STATE_KEY,
    RateLimitState,
    open_rate_limiter,
    rate_limit_lifespan,
    rate_limit_state,
)
from api.settings import ConfigError, FailureMode, LimiterSettings, load_limiter_settings

__all__ = [
    "STATE_KEY",
    "ConfigError",
    "Decision",
    "FailureMode",
    "InvalidRateLimitKey",
    "KeyFunc",
    "LimiterSettings",
    "LimiterUnavailable",
    "RateLimit",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitMisconfigured",
    "RateLimitState",
    "Reason",
    "api_key_header",
    "client_ip",
    "install_error_handler",
    "load_limiter_settings",
    "open_rate_limiter",
    "rate_limit_error_handler",
    "rate_limit_lifespan",
    "rate_limit_state",
]
