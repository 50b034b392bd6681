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
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ReadOnlyError, RedisError, ResponseError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

from limiter_service.backends.connection import Connector
from limiter_service.backends.scripts import RESULT_WIDTH, Script, load_scripts
from limiter_service.decision import Algorithm, Hit, Verdict
from limiter_service.errors import BackendUnavailable, FailureCause
from limiter_service.timeouts import patient_timeout

log = logging.getLogger(__name__)
_RETRY_PAUSE_S = 0.01
_PER_DECISION_S = 20e-6  # ~2x what Redis spends per decision in a batched script
_RETRYABLE_REPLIES = ("NOREPLICAS", "MASTERDOWN")

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
        ``deadline``. An attempt may take the attempt timeout plus ``_PER_DECISION_S`` for
        each decision it carries (Redis runs a big batch's script for a while)."""
        attempt_timeout_s = self._attempt_timeout_s + decisions * _PER_DECISION_S
        loop = asyncio.get_running_loop()
        last: Exception | None = None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise BackendUnavailable(
                    f"redis did not answer in time: {last or 'no time left'}", _cause(last)
                )
            client: aioredis.Redis | None = None
            try:
                # A whole attempt even when little of the deadline is left: cancelling a
                # command in flight costs a reconnect and may count it twice, and callers
                # bound their own wait anyway.
                async with patient_timeout(attempt_timeout_s):
                    client = await self._connector.client()
                    await attempt(client)
                return
            except NoScriptError:
                if client is not None:
                    await self._load_scripts(client, deadline)
                continue
            except (TimeoutError, RedisError, OSError) as exc:
                if isinstance(exc, ResponseError) and not _retryable(exc):
                    raise BackendUnavailable(
                        f"redis refused the script: {exc}", FailureCause.REFUSED
                    ) from exc
                last = exc
                if client is not None:
                    await self._connector.failed(client, exc)
            pause = min(_RETRY_PAUSE_S, deadline - loop.time())
            if pause > 0:
                await asyncio.sleep(pause)

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
            replies: list[Any] = [await client.evalsha(script.sha, *_arguments(hits, indexes))]
        else:
            async with client.pipeline(transaction=False) as pipe:
                for script, indexes in pending:
                    pipe.evalsha(script.sha, *_arguments(hits, indexes))
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
                _store(reply, indexes, verdicts)
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


def _arguments(hits: Sequence[Hit], indexes: list[int]) -> list[Any]:
    keys: list[str] = []
    argv: list[int] = []
    for index in indexes:
        hit = hits[index]
        first, second = hit.policy.script_params()
        keys.append(hit.storage_key)
        argv += (first, second, hit.cost, 1 if hit.dry_run else 0)
    return [len(keys), *keys, *argv]


def complete(verdicts: list[Verdict | None]) -> list[Verdict]:
    """``verdicts`` when every hit has one; raises ``BackendUnavailable`` otherwise (a
    shorter list would shift every later answer onto the wrong request)."""
    missing = sum(1 for verdict in verdicts if verdict is None)
    if missing:
        raise BackendUnavailable(
            f"redis answered {len(verdicts) - missing} of {len(verdicts)} hits",
            FailureCause.BAD_REPLY,
        )
    return cast("list[Verdict]", verdicts)


def _store(reply: list[int], indexes: list[int], verdicts: list[Verdict | None]) -> None:
    if not isinstance(reply, list) or len(reply) != len(indexes) * RESULT_WIDTH:
        size = len(reply) if isinstance(reply, list) else type(reply).__name__
        raise BackendUnavailable(
            f"script replied {size} values for {len(indexes)} hits of {RESULT_WIDTH} each",
            FailureCause.BAD_REPLY,
        )
    for position, index in enumerate(indexes):
        base = position * RESULT_WIDTH
        allowed, remaining, reset_after, retry_after = reply[base : base + RESULT_WIDTH]
        verdicts[index] = Verdict(bool(allowed), remaining, reset_after, retry_after)


def _cause(last: Exception | None) -> FailureCause:
    """Why the deadline passed: the last attempt timed out (or none could start), or it
    found no usable master."""
    if last is None or isinstance(last, TimeoutError | RedisTimeoutError):
        return FailureCause.TIMEOUT
    return FailureCause.UNAVAILABLE


def _retryable(error: ResponseError) -> bool:
    """READONLY, TRYAGAIN, NOREPLICAS and MASTERDOWN come and go with failovers."""
    if isinstance(error, ReadOnlyError | TryAgainError):
        return True
    return str(error).startswith(_RETRYABLE_REPLIES)
