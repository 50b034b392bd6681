"""The Redis backend: each algorithm is one Lua script, run with EVALSHA.

A call groups its hits by algorithm and sends one EVALSHA per group, pipelined, so a whole
batch costs one round trip. The clock is Redis ``TIME``, read inside the script. When the
attempt fails in a way a retry can fix (connection lost, timeout, READONLY after a failover,
LOADING, NOREPLICAS, MASTERDOWN, no master known) the connector looks for the master again
and the call is retried until the deadline; NOSCRIPT (an empty script cache, as on a freshly
promoted replica) reloads the scripts and re-runs only the groups that did not run.

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
from limiter_service.backends.scripts import Script, load_scripts
from limiter_service.decision import Algorithm, Hit, Verdict
from limiter_service.timeouts import patient_timeout

log = logging.getLogger(__name__)

Group = tuple[Script, list[int]]  # a script and the indexes of the hits it decides


class RedisBackend:
    """Decides hits on the Redis master that ``connector`` points at."""

    def __init__(self, connector: Connector, attempt_timeout_s: float) -> None:
        self._connector = connector
        self._attempt_timeout_s = attempt_timeout_s
        self._scripts = load_scripts()
        self.description = connector.description

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        by_algorithm: dict[Algorithm, list[int]] = {}
        for index, hit in enumerate(hits):
            by_algorithm.setdefault(hit.policy.algorithm, []).append(index)
        pending: list[Group] = [(self._scripts[a], idx) for a, idx in by_algorithm.items()]
        verdicts: list[Verdict | None] = [None] * len(hits)
        await self._with_retries(
            deadline, len(hits), lambda client: self._run(client, hits, pending, verdicts)
        )
        return complete(verdicts)

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
                await self._load_scripts(used[0], deadline)
            else:
                await self._connector.failed(used[0], error)

        attempt_timeout_s = self._attempt_timeout_s + decisions * PER_DECISION_S
        await retry_until(deadline, attempt_timeout_s, run, recover)

    async def _run(
        self,
        client: aioredis.Redis,
        hits: Sequence[Hit],
        pending: list[Group],
        verdicts: list[Verdict | None],
    ) -> None:
        """Run every pending group in one round trip; drop from ``pending`` the groups that
        ran. Raises ``NoScriptError`` when a group still has to run after a reload."""
        if len(pending) == 1:
            script, indexes = pending[0]
            arguments = script_arguments(hits, indexes)
            replies: list[Any] = [await client.evalsha(script.sha, *arguments)]
        else:
            async with client.pipeline(transaction=False) as pipe:
                for script, indexes in pending:
                    pipe.evalsha(script.sha, *script_arguments(hits, indexes))
                replies = await pipe.execute(raise_on_error=False)
        missing: list[Group] = []
        failure: Exception | None = None
        for (script, indexes), reply in zip(pending, replies, strict=True):
            if isinstance(reply, NoScriptError):
                missing.append((script, indexes))
            elif isinstance(reply, Exception):
                failure = failure or reply
                missing.append((script, indexes))
            else:
                store_reply(reply, indexes, verdicts)
        pending[:] = missing
        if failure is not None:
            raise failure
        if missing:
            raise NoScriptError("NOSCRIPT")

    async def _load_scripts(self, client: aioredis.Redis, deadline: float) -> None:
        log.info("loading rate-limit scripts into redis (script cache was empty)")
        left = deadline - asyncio.get_running_loop().time()
        try:
            async with patient_timeout(left):
                for script in self._scripts.values():
                    await client.script_load(script.source)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("could not load scripts: %r", exc)
