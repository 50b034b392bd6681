"""``RateLimit``: the FastAPI dependency that asks the limiter before an endpoint runs.

Usage, in two lines::

    Limited = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]

    @app.get("/items")
    async def items(decision: Limited) -> dict[str, str]: ...

or ``dependencies=[Depends(RateLimit(...))]`` on a route or router. Outcomes:

* counted and allowed: the endpoint runs and its response carries ``RateLimit-Policy`` and
  ``RateLimit`` (only when the endpoint returns data; an endpoint returning a ``Response``
  itself must copy ``rate_limit_state(request).headers.as_dict(decision)``). The policy's
  quota ``q`` and window ``w`` are those the limiter reported with the decision (also
  ``decision.limit`` and ``decision.window_s``);
* over the quota: ``RateLimitExceeded`` (429, ``Retry-After`` equal to ``RateLimit``'s t),
  plus ``X-Accel-Expires`` for the edge proxy when ``edge_deny_max_s`` allows (see
  ``headers.edge_expires_s``);
* no decision possible: ``FAIL_OPEN`` lets the request through without those headers,
  ``FAIL_CLOSED`` raises ``LimiterUnavailable`` (503, ``Retry-After``);
* a refused key or a server misconfiguration: 400 / 500, see ``ratelimit_client.fastapi.errors``.
"""

from __future__ import annotations

import inspect

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import Response

from ratelimit_client.decision import Decision, Reason
from ratelimit_client.errors import InvalidKey, Misconfigured
from ratelimit_client.fastapi.errors import (
    InvalidRateLimitKey,
    LimiterUnavailable,
    RateLimitExceeded,
    RateLimitMisconfigured,
)
from ratelimit_client.fastapi.headers import X_ACCEL_EXPIRES, edge_expires_s
from ratelimit_client.fastapi.keys import KeyFunc, client_ip
from ratelimit_client.fastapi.lifespan import rate_limit_state

__all__ = ["RateLimit"]


class RateLimit:
    """Charges ``cost`` units of ``policy`` to the key that ``key`` derives from the request.

    ``key`` is a FastAPI dependency returning the key string, so it may itself depend on
    others (the current user, a header). ``policy`` ``""`` lets the limiter choose by key.
    Instances are reusable and hold no per-request state.

    ``edge_deny_max_s`` caps the ``X-Accel-Expires`` of this route's ``OVER_LIMIT`` 429s
    (0: none); ``None`` takes ``LIMITER_EDGE_DENY_MAX_S`` from the settings. Turn it on
    only for routes whose proxy cache key determines ``key``'s value (README "Deny cache").
    """

    __signature__: inspect.Signature

    def __init__(
        self,
        policy: str = "default",
        key: KeyFunc = client_ip,
        *,
        cost: int = 1,
        edge_deny_max_s: int | None = None,
    ) -> None:
        if cost < 1:
            raise ValueError(f"cost must be at least 1, got {cost}")
        if edge_deny_max_s is not None and not 0 <= edge_deny_max_s <= 3600:
            raise ValueError(f"edge_deny_max_s must be between 0 and 3600, got {edge_deny_max_s}")
        self.policy = policy
        self.key = key
        self.cost = cost
        self.edge_deny_max_s = edge_deny_max_s
        # FastAPI reads the parameters from this signature: the same as __call__'s, with
        # the key resolved through the ``key`` dependency.
        signature = inspect.signature(type(self).__call__, eval_str=True)
        parameters = list(signature.parameters.values())[1:]
        self.__signature__ = signature.replace(
            parameters=[
                param.replace(default=Depends(key)) if param.name == "key" else param
                for param in parameters
            ]
        )

    def __repr__(self) -> str:
        name = getattr(self.key, "__name__", repr(self.key))
        return f"RateLimit(policy={self.policy!r}, key={name}, cost={self.cost})"

    async def __call__(self, request: Request, response: Response, key: str) -> Decision:
        """Decide; add the headers to ``response`` or raise the HTTP error (see module).

        Returns the decision, ``window_s`` included, for the endpoint to use."""
        state = rate_limit_state(request)
        try:
            decision = await state.client.decide(key, self.policy, self.cost)
        except InvalidKey as exc:
            raise InvalidRateLimitKey(exc.reason) from None
        except Misconfigured as exc:
            raise RateLimitMisconfigured(exc.detail, exc.log_detail) from None
        reason = decision.reason
        if reason is Reason.WITHIN_LIMIT:
            response.raw_headers.extend(state.headers.raw(decision))
        elif reason is Reason.OVER_LIMIT:
            headers = state.headers.as_dict(decision)
            max_s = self.edge_deny_max_s
            if max_s is None:
                max_s = state.settings.edge_deny_max_s
            if expires_s := edge_expires_s(decision, max_s):
                headers[X_ACCEL_EXPIRES] = str(expires_s)
            raise RateLimitExceeded(decision.policy, decision.retry_after_s, headers)
        elif reason is Reason.FAIL_CLOSED:
            raise LimiterUnavailable(decision.retry_after_s)
        return decision
