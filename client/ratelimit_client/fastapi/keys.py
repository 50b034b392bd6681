"""Key functions: what a request is counted against.

A key function is any FastAPI dependency returning a ``str`` (``async def`` keeps it on the
event loop; a plain ``def`` would run in the thread pool on every request). Keys are
``kind:value``; the limiter refuses empty keys and keys over ``LIMITER_MAX_KEY_BYTES``
(512 by default), which the client sees as 400. For example, per authenticated user::

    async def user_key(user: Annotated[User, Depends(current_user)]) -> str:
        return f"user:{user.id}"
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ratelimit_client.fastapi.client_ip import resolve_client_ip
from ratelimit_client.fastapi.lifespan import rate_limit_state

__all__ = ["KeyFunc", "api_key_header", "client_ip"]

KeyFunc = Callable[..., Awaitable[str]] | Callable[..., str]


async def client_ip(request: Request) -> str:
    """``ip:<address>`` of the client: ``X-Real-IP`` when the peer is a trusted proxy, else
    the peer (see ``api.client_ip``)."""
    trusted = rate_limit_state(request).trusted_proxies
    peer = request.client.host if request.client is not None else None
    return "ip:" + resolve_client_ip(peer, request.headers.get("x-real-ip"), trusted)


def api_key_header(name: str) -> Callable[[Request], Awaitable[str]]:
    """A key function counting per value of the ``name`` header: ``apikey:<hash>``.

    The value is hashed (BLAKE2b, 128 bits) so secrets never become limiter or Redis keys
    and every key has the same small size. Without the header the request is counted per
    client IP (``ip:<address>``): a missing key is never a way around the limit.
    """
    header = name.lower()

    async def api_key(request: Request) -> str:
        value = request.headers.get(header)
        if not value:
            return await client_ip(request)
        digest = hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=16)
        return "apikey:" + digest.hexdigest()

    api_key.__name__ = f"api_key_header_{header.replace('-', '_')}"
    return api_key
