"""Deciding requests: admission, validation, policy choice, the backend call and the
failure mode.

Knows nothing of gRPC. Admission and validation happen before any backend work, so a shed or
refused request never reaches Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
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
    Policy,
    Reason,
    Verdict,
)
from limiter_service.deny_cache import DenyCache
from limiter_service.errors import (
    BackendUnavailable,
    FailureCause,
    InvalidRequest,
    OverrideNotAllowed,
    RequestError,
)
from limiter_service.fallback import FallbackLog
from limiter_service.groups import given_back
from limiter_service.metrics import NO_METRICS, Metrics
from limiter_service.policies import MAX_LIMIT, PolicySet
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


def _system_clock_us() -> int:
    return time.time_ns() // 1000


class DurationLike(Protocol):
    """``google.protobuf.Duration``'s two fields."""

    @property
    def seconds(self) -> int: ...

    @property
    def nanos(self) -> int: ...


class Span(NamedTuple):
    """A duration as ``DurationLike`` (for requests built in Python)."""

    seconds: int = 0
    nanos: int = 0


class QuotaLike(Protocol):
    """What names a counter: key, policy and a request's own quota (``limit``/``window``
    zero: the policy's). ``ResetRequest`` fits."""

    @property
    def key(self) -> str: ...

    @property
    def policy(self) -> str: ...

    @property
    def limit(self) -> int: ...

    @property
    def window(self) -> DurationLike: ...


class RequestLike(QuotaLike, Protocol):
    """What ``Limiter`` reads of a request; ``Request`` and the wire message both fit."""

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
    limit: int = 0
    window: Span = Span()


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
        coalesce_window_s: float = 0.0,
        admission: Admission | None = None,
        clock: Callable[[], float] | None = None,
        metrics: Metrics = NO_METRICS,
        deny_cache: DenyCache | None = None,
        wall_clock_us: Callable[[], int] = _system_clock_us,
    ) -> None:
        """``clock`` is the monotonic clock deadlines are measured on (seconds); by
        default the running event loop's, which is what backends compare them with.
        ``admission`` bounds the work in flight (default: ``AdmissionLimits()``);
        ``coalesce_window_s`` bounds how long a busy coalescer waits for more decisions
        before a round trip (``batching.Coalescer``). ``metrics`` hears of every decision answered
        and every failure-mode answer.
        ``deny_cache`` answers hits the backend has just denied (``deny_cache``); it is
        cleared whenever ``policies`` is replaced and for each counter ``reset``.
        ``wall_clock_us`` (Unix time, microseconds) aligns the windows of the denials made
        without the backend (``decide_hits``, a cost above a policy's capacity)."""
        self._clock = clock
        self._wall_clock_us = wall_clock_us
        self.admission = admission or Admission()
        self.deny_cache = deny_cache
        self._policies = policies
        self.backend = backend
        self.metrics = metrics
        self._coalescer = Coalescer(backend, max_in_flight, metrics, coalesce_window_s)
        self._prefix = key_prefix
        self._max_key_bytes = max_key_bytes
        self._failure_mode = failure_mode
        self._decision_timeout_s = decision_timeout_s
        self.fallbacks = FallbackLog(failure_mode.value)
        self._groups = itertools.count(1)

    @property
    def policies(self) -> PolicySet:
        """The policies in force; assigning a new set (a reload) drops the deny cache."""
        return self._policies

    @policies.setter
    def policies(self, policies: PolicySet) -> None:
        self._policies = policies
        if self.deny_cache is not None:
            self.deny_cache.clear()

    def hit_for(self, request: RequestLike) -> Hit:
        """Validate ``request`` and say what to count. Raises ``InvalidRequest``,
        ``UnknownPolicy`` or ``OverrideNotAllowed`` with a message naming the problem."""
        policy, storage_key = self.counter_for(request)
        cost = request.cost or 1
        if cost > policy.capacity and not policy.unlimited:
            raise InvalidRequest(
                f"cost {cost} exceeds the capacity {policy.capacity} of policy {policy.name!r}",
                "cost",
            )
        return Hit(storage_key, policy, cost, request.dry_run)

    def counter_for(self, request: QuotaLike) -> tuple[Policy, str]:
        """The quota that applies to ``request`` (its policy, the policy's override for its
        key, or the request's own quota) and the storage key of its counter. A quota with
        another window (and, for token_bucket, another limit) than the policy's own has a
        counter of its own. Raises as ``hit_for``."""
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
        base = self._policies.resolve(name, key)
        policy = base.for_key(key)
        window = request.window
        window_us = window.seconds * US_PER_SECOND + window.nanos // 1000
        if request.limit or window_us:
            policy = _requested(policy, request.limit, window_us)
        storage_key = f"{self._prefix}:{{{policy.name}:{key}}}:{_ALGORITHM_TAG[policy.algorithm]}"
        if policy.window_us != base.window_us:
            storage_key += f":w{policy.window_us}"
        if policy.algorithm is Algorithm.TOKEN_BUCKET and policy.limit != base.limit:
            storage_key += f":l{policy.limit}"
        return policy, storage_key

    async def reset(self, request: QuotaLike, time_remaining_s: float | None = None) -> str:
        """Clear the counter ``request`` names (validated as for a decision) in one round
        trip, and its deny-cache entry; returns the policy's name. Raises
        ``BackendUnavailable`` when the backend does not answer within the decision timeout
        (75 % of the caller's deadline at most)."""
        policy, storage_key = self.counter_for(request)
        if policy.unlimited:
            return policy.name
        budget = self._decision_timeout_s
        if time_remaining_s is not None:
            budget = min(budget, max(time_remaining_s * _DEADLINE_SHARE, 0.0))
        try:
            async with patient_timeout(budget):
                await self.backend.reset(storage_key, self._now() + budget)
        except TimeoutError:
            raise BackendUnavailable(
                f"no answer within {budget * 1000:.0f} ms", FailureCause.TIMEOUT
            ) from None
        finally:
            # Also when the reset failed: it may have reached Redis.
            if self.deny_cache is not None:
                self.deny_cache.forget(storage_key)
        return policy.name

    async def decide(
        self,
        requests: Sequence[RequestLike],
        time_remaining_s: float | None = None,
        peer: str = "",
        *,
        all_or_nothing: bool = False,
    ) -> list[Decision]:
        """Decide ``requests`` in order, in one backend round trip.

        ``time_remaining_s`` is the caller's deadline, if it has one; the backend gets at
        most ``decision_timeout_s`` and at most 75 % of that, after which the failure mode
        answers. ``peer`` is the caller's address, whose calls share admission limits; a
        call finding no room waits for it at most ``decision_timeout_s`` and at most half
        its deadline. Raises ``InvalidRequest`` for an oversized batch, ``Overloaded`` when
        the call is shed, then ``InvalidRequest``/``UnknownPolicy``, all before touching
        the backend.

        ``all_or_nothing``: ``requests`` are one group; each is decided in order as without
        it, but nothing is consumed unless none is denied (shadow and unlimited policies
        never block). Requests denied are ``OVER_LIMIT``; those that fitted and were not
        consumed ``NOT_ALL_ALLOWED`` (README, "All-or-nothing batches"). A group the deny
        cache knows to be denied is answered here; on a backend failure the failure mode
        answers the whole group.
        """
        if len(requests) > MAX_BATCH:
            raise InvalidRequest(
                f"batch has {len(requests)} requests; the maximum is {MAX_BATCH}", "requests"
            )

        async def run(remaining_s: float | None) -> list[Decision]:
            group = next(self._groups) if all_or_nothing and len(requests) > 1 else 0
            return await self._decide(requests, remaining_s, group)

        return await self._admitted(peer, len(requests), time_remaining_s, run)

    async def decide_hits(
        self,
        hits: Sequence[Hit],
        time_remaining_s: float | None = None,
        peer: str = "",
        *,
        all_or_nothing: bool = False,
    ) -> list[Decision]:
        """Decide ``hits`` that the caller resolved itself (counters and policies that are
        not in the policy set, e.g. Envoy rules) as ``decide`` decides requests: admission,
        the deny cache, unlimited policies, the failure mode and metrics all apply, in one
        backend round trip. A hit costing more than its policy's capacity is denied here,
        without the backend (``_answer_here``). ``all_or_nothing``: no hit consumes unless
        every hit of an enforced policy fits. Raises ``InvalidRequest`` for more than
        ``MAX_BATCH`` hits and ``Overloaded`` when the call is shed."""
        if len(hits) > MAX_BATCH:
            raise InvalidRequest(
                f"{len(hits)} decisions in one call; the maximum is {MAX_BATCH}", "descriptors"
            )

        async def run(remaining_s: float | None) -> list[Decision]:
            group = next(self._groups) if all_or_nothing and len(hits) > 1 else 0
            if group:
                return await self._decide_group(
                    [hit._replace(group=group) for hit in hits], remaining_s
                )
            return await self._decide_hits(list(hits), remaining_s)

        return await self._admitted(peer, len(hits), time_remaining_s, run)

    async def _admitted(
        self,
        peer: str,
        count: int,
        time_remaining_s: float | None,
        run: Callable[[float | None], Awaitable[list[Decision]]],
    ) -> list[Decision]:
        """``run`` (given the deadline left) once admission lets ``count`` decisions of
        ``peer`` in, waiting for room at most ``decision_timeout_s`` and at most half the
        deadline; its decisions go to ``metrics``."""
        wait_s = self._decision_timeout_s
        if time_remaining_s is not None:
            wait_s = min(wait_s, time_remaining_s * _ADMISSION_WAIT_SHARE)
        start = self._now()
        async with self.admission.admit(peer, count, wait_s):
            if time_remaining_s is not None:
                time_remaining_s -= self._now() - start
            decisions = await run(time_remaining_s)
        self.metrics.decided(decisions)
        return decisions

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def _decide(
        self, requests: Sequence[RequestLike], time_remaining_s: float | None, group: int
    ) -> list[Decision]:
        hits: list[Hit] = []
        for index, request in enumerate(requests):
            try:
                hit = self.hit_for(request)
            except RequestError as exc:
                exc.index = index
                raise
            hits.append(hit._replace(group=group) if group else hit)
        if group:
            return await self._decide_group(hits, time_remaining_s)
        return await self._decide_hits(hits, time_remaining_s)

    async def _decide_hits(self, hits: list[Hit], time_remaining_s: float | None) -> list[Decision]:
        """Answer here what needs no backend (unlimited policies, the deny cache) and ask
        the backend for the rest, in one round trip; answers in ``hits``' order."""
        cache = self.deny_cache
        now_us = cache.clock() if cache is not None else 0
        generation = cache.generation if cache is not None else 0
        local = [self._local_answer(hit, now_us) for hit in hits]
        misses = [hit for hit, answer in zip(hits, local, strict=True) if answer is None]
        decided = await self._ask_backend(misses, time_remaining_s)
        if cache is not None:
            for hit, decision in zip(misses, decided, strict=True):
                if decision.reason is Reason.OVER_LIMIT:
                    cache.store(hit, decision, now_us, generation)
        if len(misses) == len(hits):
            return decided
        backend_answers = iter(decided)
        return [next(backend_answers) if answer is None else answer for answer in local]

    async def _decide_group(
        self, hits: list[Hit], time_remaining_s: float | None
    ) -> list[Decision]:
        """``_decide_hits`` for one all-or-nothing group. Unlimited policies are answered
        here and never block; a hit costing more than its enforced policy can ever grant
        denies the group (``_decide_denied_group``). When the deny cache knows a denial of
        one hit, the whole group is answered here without a round trip: those hits
        ``OVER_LIMIT`` as cached, the others ``NOT_ALL_ALLOWED`` with ``remaining`` and
        ``reset_after`` 0 (not known). Every ``NOT_ALL_ALLOWED`` answer gets the longest
        ``retry_after`` of the group's ``OVER_LIMIT`` answers (when the group may fit
        again, as far as is known)."""
        cache = self.deny_cache
        now_us = cache.clock() if cache is not None else 0
        generation = cache.generation if cache is not None else 0
        local = [self._answer_here(hit) for hit in hits]
        if any(answer is not None and answer.reason is Reason.OVER_LIMIT for answer in local):
            return await self._decide_denied_group(hits, local, time_remaining_s)
        if cache is not None:
            cached = [
                None if answer else cache.answer(hit, now_us)
                for hit, answer in zip(hits, local, strict=True)
            ]
            if any(cached):
                for answer in cached:
                    if answer is not None:
                        self.metrics.deny_cached(answer.policy)
                decisions = [
                    answer or cached_answer or _held(hit.policy)
                    for hit, answer, cached_answer in zip(hits, local, cached, strict=True)
                ]
                return _with_group_retry(decisions)
        misses = [hit for hit, answer in zip(hits, local, strict=True) if answer is None]
        decided = await self._ask_backend(misses, time_remaining_s)
        if cache is not None:
            seen: set[str] = set()
            for hit, decision in zip(misses, decided, strict=True):
                # A denial seen after an earlier hit of the group on the same counter may be
                # due to that hit's tentative consumption, which did not happen.
                if decision.reason is Reason.OVER_LIMIT and hit.storage_key not in seen:
                    cache.store(hit, decision, now_us, generation)
                seen.add(hit.storage_key)
        backend_answers = iter(decided)
        return _with_group_retry(
            [next(backend_answers) if answer is None else answer for answer in local]
        )

    async def _decide_denied_group(
        self, hits: list[Hit], local: list[Decision | None], time_remaining_s: float | None
    ) -> list[Decision]:
        """A group that a hit answered here (``_answer_here``: a cost above its enforced
        policy's capacity) denies: nothing is consumed, and the other hits are asked as
        dry runs, in one round trip, each for its cost plus that of the earlier hits of the
        group on its counter (what the group would have tentatively consumed). Those that
        fit are ``NOT_ALL_ALLOWED`` with what is available (as ``groups.settle`` reports
        it); the others are denied as the dry run says."""
        added: dict[str, int] = {}
        asked: list[Hit] = []
        for hit, answer in zip(hits, local, strict=True):
            if answer is None:
                units = added[hit.storage_key] = added.get(hit.storage_key, 0) + hit.cost
                asked.append(hit._replace(cost=units, dry_run=True, group=0))
        cache = self.deny_cache
        now_us = cache.clock() if cache is not None else 0
        generation = cache.generation if cache is not None else 0
        decided = await self._ask_backend(asked, time_remaining_s)
        answers = iter(zip(asked, decided, strict=True))
        decisions: list[Decision] = []
        for answer in local:
            if answer is not None:
                decisions.append(answer)
                continue
            hit, decision = next(answers)
            if decision.reason is Reason.OVER_LIMIT and cache is not None:
                cache.store(hit, decision, now_us, generation)
            if decision.reason is Reason.WITHIN_LIMIT:
                remaining, reset_us = given_back(
                    hit.policy, decision.remaining, decision.reset_after_us, hit.cost
                )
                decision = _held(hit.policy)._replace(remaining=remaining, reset_after_us=reset_us)
            decisions.append(decision)
        return _with_group_retry(decisions)

    def _answer_here(self, hit: Hit) -> Decision | None:
        """The answer for ``hit`` that needs neither the backend nor the deny cache: an
        unlimited policy's, or the denial of a cost above what the policy can ever grant
        (only ``decide_hits`` takes such hits; ``hit_for`` refuses them). That denial
        consumes nothing; ``reset_after`` and ``retry_after`` are the time to the end of the
        policy's window, aligned to the Unix epoch (what Envoy's reference service reports);
        under a shadow policy it is ``SHADOW_OVER_LIMIT``, allowed."""
        policy = hit.policy
        if policy.unlimited:
            return _unlimited(policy)
        if hit.cost <= policy.capacity:
            return None
        wait_us = policy.window_us - self._wall_clock_us() % policy.window_us
        return Decision(
            policy.shadow,
            policy.limit,
            0,
            wait_us,
            wait_us,
            policy.name,
            Reason.SHADOW_OVER_LIMIT if policy.shadow else Reason.OVER_LIMIT,
            policy.window_us,
        )

    def _local_answer(self, hit: Hit, now_us: int) -> Decision | None:
        """The answer for ``hit`` without the backend, if there is one."""
        here = self._answer_here(hit)
        if here is not None:
            return here
        if self.deny_cache is None:
            return None
        answer = self.deny_cache.answer(hit, now_us)
        if answer is not None:
            self.metrics.deny_cached(answer.policy)
        return answer

    async def _ask_backend(self, hits: list[Hit], time_remaining_s: float | None) -> list[Decision]:
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
            kind = exc.cause if isinstance(exc, BackendUnavailable) else FailureCause.TIMEOUT
            self.metrics.fell_back(kind, len(hits))
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


def _requested(policy: Policy, limit: int, window_us: int) -> Policy:
    """``policy`` with the request's own quota; raises when the policy does not allow one
    or the quota is out of range."""
    if not policy.allow_request_override:
        raise OverrideNotAllowed(
            f"policy {policy.name!r} does not accept a limit or window from the request "
            "(it would need allow_request_override: true)",
            policy.name,
        )
    if limit > MAX_LIMIT:
        raise InvalidRequest(f"limit {limit} is over the maximum {MAX_LIMIT}", "limit")
    if window_us < 0 or (window_us == 0 and limit == 0):
        raise InvalidRequest("window must be positive", "window")
    overridden = policy.with_quota(limit or policy.limit, window_us or None)
    if overridden.algorithm is Algorithm.TOKEN_BUCKET and overridden.emission_interval_us < 1:
        raise InvalidRequest("window / limit must be at least 1 microsecond", "limit")
    return overridden


def _unlimited(policy: Policy) -> Decision:
    return Decision(
        True, policy.limit, policy.limit, 0, 0, policy.name, Reason.UNLIMITED, policy.window_us
    )


def _held(policy: Policy) -> Decision:
    """A hit of a denied group that the backend was not asked about."""
    return Decision(
        policy.shadow, policy.limit, 0, 0, 0, policy.name, Reason.NOT_ALL_ALLOWED, policy.window_us
    )


def _with_group_retry(decisions: list[Decision]) -> list[Decision]:
    """``decisions`` of one group, each ``NOT_ALL_ALLOWED`` one with the longest
    ``retry_after`` of the ``OVER_LIMIT`` ones."""
    retry_us = max(
        (d.retry_after_us for d in decisions if d.reason is Reason.OVER_LIMIT), default=0
    )
    if not retry_us:
        return decisions
    return [
        d._replace(retry_after_us=retry_us) if d.reason is Reason.NOT_ALL_ALLOWED else d
        for d in decisions
    ]


def _decision(hit: Hit, verdict: Verdict) -> Decision:
    policy = hit.policy
    if verdict.held:
        reason = Reason.NOT_ALL_ALLOWED
    elif verdict.allowed:
        reason = Reason.WITHIN_LIMIT
    elif policy.shadow:
        reason = Reason.SHADOW_OVER_LIMIT
    else:
        reason = Reason.OVER_LIMIT
    return Decision(
        verdict.allowed or policy.shadow,
        policy.limit,
        verdict.remaining,
        verdict.reset_after_us,
        verdict.retry_after_us,
        policy.name,
        reason,
        policy.window_us,
    )
