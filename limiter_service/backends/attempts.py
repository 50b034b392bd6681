"""What the Redis backends share: the retry loop within a caller's deadline, the EVALSHA
arguments of a group of hits, and the reading of a script's reply into verdicts.

``RedisBackend`` (one master, found by a ``Connector``) and ``ClusterBackend`` (a slot map of
primaries) differ only in what one attempt does and how they recover after it failed; how
long they keep trying, what they retry and which ``FailureCause`` they report are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Any, cast

from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from limiter_service.backends.scripts import (
    ALGORITHM_CODES,
    DRY_RUN,
    PROBE,
    RESULT_WIDTH,
    SHADOW,
)
from limiter_service.decision import Hit, Verdict
from limiter_service.errors import BackendUnavailable, FailureCause
from limiter_service.timeouts import patient_timeout

__all__ = [
    "PER_DECISION_S",
    "complete",
    "failure_cause",
    "retry_until",
    "retryable",
    "script_arguments",
    "store_reply",
]

RETRY_PAUSE_S = 0.01
PER_DECISION_S = 20e-6  # ~2x what Redis spends per decision in a batched script
_RETRYABLE_REPLIES = ("NOREPLICAS", "MASTERDOWN")


async def retry_until(
    deadline: float,
    attempt_timeout_s: float,
    attempt: Callable[[], Awaitable[None]],
    recover: Callable[[Exception], Awaitable[None]],
) -> None:
    """Run ``attempt()`` until it succeeds, each try bounded by ``attempt_timeout_s``,
    starting none after ``deadline`` (the event loop's clock).

    After a failure a retry can fix (connection lost, timeout, READONLY, LOADING,
    TRYAGAIN, CLUSTERDOWN, NOREPLICAS, MASTERDOWN) ``recover(error)`` runs, then a short
    pause; after NOSCRIPT ``recover`` runs and the next try starts at once. Raises
    ``BackendUnavailable``: ``REFUSED`` for any other error reply, else ``TIMEOUT`` or
    ``UNAVAILABLE`` (``failure_cause``) once the deadline has passed.
    """
    loop = asyncio.get_running_loop()
    last: Exception | None = None
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise BackendUnavailable(
                f"redis did not answer in time: {last or 'no time left'}", failure_cause(last)
            )
        try:
            # A whole attempt even when little of the deadline is left: cancelling a
            # command in flight costs a reconnect and may count it twice, and callers
            # bound their own wait anyway.
            async with patient_timeout(attempt_timeout_s):
                await attempt()
            return
        except NoScriptError as exc:
            await recover(exc)
            continue
        except (TimeoutError, RedisError, OSError) as exc:
            if isinstance(exc, ResponseError) and not retryable(exc):
                raise BackendUnavailable(
                    f"redis refused the script: {exc}", FailureCause.REFUSED
                ) from exc
            last = exc
            await recover(exc)
        pause = min(RETRY_PAUSE_S, deadline - loop.time())
        if pause > 0:
            await asyncio.sleep(pause)


def failure_cause(last: Exception | None) -> FailureCause:
    """Why the deadline passed: the last attempt timed out (or none could start), or it
    found no usable master."""
    if last is None or isinstance(last, TimeoutError | RedisTimeoutError):
        return FailureCause.TIMEOUT
    return FailureCause.UNAVAILABLE


def retryable(error: ResponseError) -> bool:
    """READONLY, TRYAGAIN, CLUSTERDOWN, NOREPLICAS and MASTERDOWN come and go with
    failovers and resharding."""
    if isinstance(error, ReadOnlyError | TryAgainError | ClusterDownError):
        return True
    return str(error).startswith(_RETRYABLE_REPLIES)


def script_arguments(
    hits: Sequence[Hit], indexes: Sequence[int], probing: Container[int] = ()
) -> list[Any]:
    """EVALSHA's arguments after the SHA for ``hits[i]`` for each ``i`` in ``indexes`` (a
    group's hits adjacent): the key count, the keys, then ``ARGS_PER_HIT`` integers per
    hit. The groups in ``probing`` are decided but write nothing."""
    keys: list[str] = []
    argv: list[int] = []
    for index in indexes:
        hit = hits[index]
        first, second = hit.policy.script_params()
        flags = DRY_RUN if hit.dry_run else 0
        if hit.policy.shadow:
            flags |= SHADOW
        if hit.group and hit.group in probing:
            flags |= PROBE
        keys.append(hit.storage_key)
        argv += (ALGORITHM_CODES[hit.policy.algorithm], first, second, hit.cost, flags, hit.group)
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


def store_reply(reply: list[int], indexes: Sequence[int], verdicts: list[Verdict | None]) -> None:
    """Put a script's reply (``RESULT_WIDTH`` integers per hit) into ``verdicts`` at
    ``indexes``; raises ``BackendUnavailable`` (``BAD_REPLY``) when its size is wrong,
    storing nothing."""
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
