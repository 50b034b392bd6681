"""Every HTTP error the rate-limit dependency answers with. The client's errors
(``ratelimit_client.errors``, mapped from the limiter's statuses there) become these in
``RateLimit``: ``InvalidKey`` is 400, ``Misconfigured`` is 500.

The whole tree (all are ``fastapi.HTTPException``, so an app that installs no handler still
sends the right status and headers)::

    RateLimitError                 base; ``body()`` is the JSON the client gets
    ├── RateLimitExceeded          429  over the quota; Retry-After + RateLimit-Policy/RateLimit
    ├── LimiterUnavailable         503  no decision and failure mode closed; Retry-After
    ├── InvalidRateLimitKey        400  the key taken from the request was refused
    │                                   (empty or oversized, e.g. a huge client-supplied id)
    └── RateLimitMisconfigured     500  a server bug: unknown policy, cost above the policy's
                                        capacity, LIMITER_ADDR not a ratelimit.v1 service

Bodies are ``{"detail": ...}`` plus ``"retry_after"`` (seconds) for 429 and 503. They never
carry a traceback; ``RateLimitMisconfigured.log_detail`` keeps the limiter's own words for
the server log.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ratelimit_client.fastapi.headers import RETRY_AFTER

__all__ = [
    "InvalidRateLimitKey",
    "LimiterUnavailable",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitMisconfigured",
    "install_error_handler",
    "rate_limit_error_handler",
]


class RateLimitError(HTTPException):
    """An answer given instead of the endpoint's."""

    def __init__(
        self, status_code: int, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, detail, headers)
        self.detail: str = detail

    def body(self) -> dict[str, object]:
        """The JSON body: ``{"detail": ...}``."""
        return {"detail": self.detail}


class _RetryLater(RateLimitError):
    def __init__(
        self, status_code: int, detail: str, retry_after_s: int, headers: dict[str, str]
    ) -> None:
        self.retry_after_s = max(1, retry_after_s)
        super().__init__(status_code, detail, {RETRY_AFTER: str(self.retry_after_s), **headers})

    def body(self) -> dict[str, object]:
        """``{"detail": ..., "retry_after": seconds}``."""
        return {"detail": self.detail, "retry_after": self.retry_after_s}


class RateLimitExceeded(_RetryLater):
    """429: over the quota. ``headers`` adds ``RateLimit-Policy``/``RateLimit`` to
    ``Retry-After``; ``retry_after_s`` is at least 1."""

    def __init__(self, policy: str, retry_after_s: int, headers: dict[str, str]) -> None:
        self.policy = policy
        super().__init__(429, "rate limit exceeded", retry_after_s, headers)


class LimiterUnavailable(_RetryLater):
    """503: no decision could be made and the failure mode is closed."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__(503, "rate limiter unavailable", retry_after_s, {})


class InvalidRateLimitKey(RateLimitError):
    """400: the rate-limit key derived from this request was refused."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, f"invalid rate-limit key: {reason}")


class RateLimitMisconfigured(RateLimitError):
    """500: the server's rate limiting is misconfigured. ``detail`` is safe to show;
    ``log_detail`` is the limiter's full message, for the log only."""

    def __init__(self, detail: str, log_detail: str) -> None:
        super().__init__(500, f"server misconfiguration: {detail}")
        self.log_detail = log_detail


def rate_limit_error_handler(request: Request, exc: Exception) -> Response:
    """Renders a ``RateLimitError`` as its JSON body, status and headers."""
    if not isinstance(exc, RateLimitError):
        raise TypeError(f"not a RateLimitError: {exc!r}")
    return JSONResponse(exc.body(), exc.status_code, headers=exc.headers)


def install_error_handler(app: FastAPI) -> None:
    """Makes ``app`` answer ``RateLimitError`` with ``body()`` (call before it serves)."""
    app.add_exception_handler(RateLimitError, rate_limit_error_handler)
