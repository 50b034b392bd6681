"""The Redis backend: one Lua script (``scripts``), run with EVALSHA.

A call sends all its hits, of any algorithms and all-or-nothing groups, in one EVALSHA, so a
whole batch costs one round trip and is decided atomically. The clock is Redis ``TIME``,
read inside the script. When the attempt fails in a way a retry can fix (connection lost,
timeout, READONLY after a failover, LOADING, NOREPLICAS, MASTERDOWN, no master known) the
connector looks for the master again and the call is retried until the deadline; NOSCRIPT
(an empty script cache, as on a freshly promoted replica) loads the script and runs the
call again at once (the script did not run, so nothing was counted).

A retried attempt whose first try reached Redis before the connection broke may be counted
twice: the error is on the side of denying, never of over-admitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from limiter_service.backends.attempts import (
    PER_DECISION_S,
    complete,
    retry_until,
    script_arguments,
    store_reply,
)
from limiter_service.backends.connection import Connector
from limiter_service.backends.scripts import load_script
from limiter_service.decision import Hit, Verdict
from limiter_service.groups import settle
from limiter_service.timeouts import patient_timeout

log = logging.getLogger(__name__)


class RedisBackend:
    """Decides hits on the Redis master that ``connector`` points at."""

    def __init__(self, connector: Connector, attempt_timeout_s: float) -> None:
        self._connector = connector
        self._attempt_timeout_s = attempt_timeout_s
        self._script = load_script()
        self.description = connector.description

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        if not hits:
            return []
        arguments = script_arguments(hits, range(len(hits)))
        verdicts: list[Verdict | None] = [None] * len(hits)

        async def run(client: aioredis.Redis) -> None:
            reply = await client.evalsha(self._script.sha, *arguments)
            store_reply(reply, range(len(hits)), verdicts)

        await self._with_retries(deadline, len(hits), run)
        return settle(hits, complete(verdicts))

    async def reset(self, storage_key: str, deadline: float) -> None:
        async def delete(client: aioredis.Redis) -> None:
            await client.delete(storage_key)

        await self._with_retries(deadline, 1, delete)

    async def refresh(self, deadline: float) -> None:
        """Re-check the master (never raises; what it finds shows in the next decision)."""
        left = deadline - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError, RedisError, OSError):
            async with patient_timeout(left):
                await self._connector.refresh()

    async def close(self) -> None:
        await self._connector.close()

    async def _with_retries(self, deadline: float, decisions: int, attempt: Any) -> None:
        """Run ``attempt(client)`` until it succeeds, retrying what a retry can fix until
        ``deadline`` (``attempts.retry_until``). An attempt may take the attempt timeout
        plus ``PER_DECISION_S`` for each decision it carries (Redis runs a big batch's
        script for a while)."""
        used: list[aioredis.Redis] = []  # the client of the latest attempt, once it has one

        async def run() -> None:
            used.clear()
            client = await self._connector.client()
            used.append(client)
            await attempt(client)

        async def recover(error: Exception) -> None:
            if not used:
                return
            if isinstance(error, NoScriptError):
                await self._load_script(used[0], deadline)
            else:
                await self._connector.failed(used[0], error)

        attempt_timeout_s = self._attempt_timeout_s + decisions * PER_DECISION_S
        await retry_until(deadline, attempt_timeout_s, run, recover)

    async def _load_script(self, client: aioredis.Redis, deadline: float) -> None:
        log.info("loading rate-limit scripts into redis (script cache was empty)")
        left = deadline - asyncio.get_running_loop().time()
        try:
            async with patient_timeout(left):
                await client.script_load(self._script.source)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("could not load the script: %r", exc)
