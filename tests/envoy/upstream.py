"""The tiny upstream behind Envoy in these tests: every ``GET`` answers 200 with JSON naming
the path and the ``X-Real-IP`` Envoy sent, so a test sees what reached the upstream.

Run under uvicorn (``devstack.start_api(app="tests.envoy.upstream:app")``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["app"]

Message = MutableMapping[str, Any]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """A raw ASGI app (no lifespan work: it has none)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = {name.decode(): value.decode() for name, value in scope["headers"]}
    body = json.dumps({"path": scope["path"], "x-real-ip": headers.get("x-real-ip")}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
