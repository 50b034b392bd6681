"""Deciding requests: admission, validation, policy choice, the backend call and the
failure mode.

Knows nothing of gRPC. Admission and validation happen before any backend work, so a shed or
refused request never reaches Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from limiter_service.admission import Admission
from limiter_service.backends.base import Backend
from limiter_service.batching import Coalescer
from limiter_service.decision import (
    US_PER_SECOND,
    Algorithm,
    Decision,
    FailureMode,
    Hit,
    Reason,
    Verdict,
)
from limiter_service.errors import BackendUnavailable, InvalidRequest, RequestError
from limiter_service.fallback import FallbackLog
from limiter_service.policies import PolicySet
from limiter_service.timeouts import patient_timeout

MAX_BATCH = 1000
MAX_POLICY_NAME_BYTES = 128
FAIL_CLOSED_RETRY_AFTER_US = US_PER_SECOND
# Share of the caller's remaining deadline the backend may use; the rest answers the RPC.
_DEADLINE_SHARE = 0.75
# Share of it a call may wait for admission; the rest decides (or sheds) it.
_ADMISSION_WAIT_SHARE = 0.5
_ALGORITHM_TAG = {
    Algorithm.FIXED_WINDOW: "fw",
    Algorithm.SLIDING_WINDOW: "sw",
    Algorithm.TOKEN_BUCKET: "tb",
}


class RequestLike(Protocol):
    """What ``Limiter`` reads of a request; ``Request`` and the wire message both fit."""

    @property
    def key(self) -> str: ...

    @property
    def policy(self) -> str: ...

    @property
    def cost(self) -> int: ...

    @property
    def dry_run(self) -> bool: ...


class Request(NamedTuple):
    """One request to decide, as the client sent it (``cost`` 0 means 1)."""

    key: str
    policy: str = ""
    cost: int = 1
    dry_run: bool = False


class Limiter:
    """Turns requests into decisions."""

    def __init__(
        self,
        policies: PolicySet,
        backend: Backend,
        *,
        key_prefix: str = "rl",
        max_key_bytes: int = 512,
        failure_mode: FailureMode = FailureMode.OPEN,
        decision_timeout_s: float = 0.1,
        max_in_flight: int = 4,
        admission: Admission | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` is the monotonic clock deadlines are measured on (seconds); by
        default the running event loop's, which is what backends compare them with.
        ``admission`` bounds the work in flight (default: ``AdmissionLimits()``)."""
        self._clock = clock
        self.admission = admission or Admission()
        self.policies = policies
        self.backend = backend
        self._coalescer = Coalescer(backend, max_in_flight)
        self._prefix = key_prefix
        self._max_key_bytes = max_key_bytes
        self._failure_mode = failure_mode
        self._decision_timeout_s = decision_timeout_s
        self.fallbacks = FallbackLog(failure_mode.value)

    def hit_for(self, request: RequestLike) -> Hit:
        """Validate ``request`` and say what to count. Raises ``InvalidRequest`` or
        ``UnknownPolicy`` with a message naming the problem."""
        key = request.key
        if not key:
            raise InvalidRequest("key must not be empty", "key")
        # A character is at most 4 UTF-8 bytes: most keys need no encoding to be checked.
        if len(key) * 4 > self._max_key_bytes:
            size = len(key.encode("utf-8"))
            if size > self._max_key_bytes:
                raise InvalidRequest(
                    f"key is {size} bytes; the maximum is {self._max_key_bytes}", "key"
                )
        name = request.policy
        if len(name) * 4 > MAX_POLICY_NAME_BYTES and len(name.encode()) > MAX_POLICY_NAME_BYTES:
            raise InvalidRequest(
                f"policy name is {len(name.encode())} bytes; the maximum is "
                f"{MAX_POLICY_NAME_BYTES}",
                "policy",
            )
        policy = self.policies.resolve(name, key)
        cost = request.cost or 1
        if cost > policy.capacity:
            raise InvalidRequest(
                f"cost {cost} exceeds the capacity {policy.capacity} of policy {policy.name!r}",
                "cost",
            )
        tag = _ALGORITHM_TAG[policy.algorithm]
        storage_key = f"{self._prefix}:{{{policy.name}:{key}}}:{tag}"
        return Hit(storage_key, policy, cost, request.dry_run)

    async def decide(
        self,
        requests: Sequence[RequestLike],
        time_remaining_s: float | None = None,
        peer: str = "",
    ) -> list[Decision]:
        """Decide ``requests`` in order, in one backend round trip.

        ``time_remaining_s`` is the caller's deadline, if it has one; the backend gets at
        most ``decision_timeout_s`` and at most 75 % of that, after which the failure mode
        answers. ``peer`` is the caller's address, whose calls share admission limits; a
        call finding no room waits for it at most ``decision_timeout_s`` and at most half
        its deadline. Raises ``InvalidRequest`` for an oversized batch, ``Overloaded`` when
        the call is shed, then ``InvalidRequest``/``UnknownPolicy``, all before touching
        the backend.
        """
        if len(requests) > MAX_BATCH:
            raise InvalidRequest(
                f"batch has {len(requests)} requests; the maximum is {MAX_BATCH}", "requests"
            )
        wait_s = self._decision_timeout_s
        if time_remaining_s is not None:
            wait_s = min(wait_s, time_remaining_s * _ADMISSION_WAIT_SHARE)
        start = self._now()
        async with self.admission.admit(peer, len(requests), wait_s):
            if time_remaining_s is not None:
                time_remaining_s -= self._now() - start
            return await self._decide(requests, time_remaining_s)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def _decide(
        self, requests: Sequence[RequestLike], time_remaining_s: float | None
    ) -> list[Decision]:
        hits: list[Hit] = []
        for index, request in enumerate(requests):
            try:
                hits.append(self.hit_for(request))
            except RequestError as exc:
                exc.index = index
                raise
        if not hits:
            return []
        budget = self._decision_timeout_s
        if time_remaining_s is not None:
            budget = min(budget, max(time_remaining_s * _DEADLINE_SHARE, 0.0))
        now = self._now()
        try:
            async with patient_timeout(budget):
                verdicts = await self._coalescer.decide(hits, now + budget)
        except (BackendUnavailable, TimeoutError) as exc:
            cause = str(exc) or f"no answer within {budget * 1000:.0f} ms"
            self.fallbacks.record(len(hits), cause)
            return [self._fallback(hit) for hit in hits]
        self.fallbacks.recovered()
        return [_decision(hit, verdict) for hit, verdict in zip(hits, verdicts, strict=True)]

    def _fallback(self, hit: Hit) -> Decision:
        policy = hit.policy
        if self._failure_mode is FailureMode.OPEN:
            return Decision(
                True, policy.limit, 0, 0, 0, policy.name, Reason.FAIL_OPEN, policy.window_us
            )
        return Decision(
            False,
            policy.limit,
            0,
            0,
            FAIL_CLOSED_RETRY_AFTER_US,
            policy.name,
            Reason.FAIL_CLOSED,
            policy.window_us,
        )

    async def close(self) -> None:
        await self._coalescer.close()
        await self.backend.close()


def _decision(hit: Hit, verdict: Verdict) -> Decision:
    policy = hit.policy
    return Decision(
        verdict.allowed,
        policy.limit,
        verdict.remaining,
        verdict.reset_after_us,
        verdict.retry_after_us,
        policy.name,
        Reason.WITHIN_LIMIT if verdict.allowed else Reason.OVER_LIMIT,
        policy.window_us,
    )
