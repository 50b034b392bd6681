"""A testing fake: an in-process limiter to test endpoints without running the service.

``FakeLimiter`` has the clients' interface (``decide``, ``connect``, ``close``,
``outages``) and answers in one of two ways:

* **counting** (the default): a fixed window per (policy, key), ``limit`` units per
  ``window_s`` seconds, per-policy limits with ``set_policy``; the clock is injectable;
* **scripted**: ``push("deny", "fail", ...)`` queues the next answers, one per call, before
  counting resumes. Outcomes: ``allow``, ``deny``, ``fail`` (the failure mode answers, as
  when the limiter is down), ``invalid_key`` (raises ``InvalidKey``), ``misconfigured``
  (raises ``Misconfigured``) and ``shadow`` (an over-limit answer of a shadow policy:
  allowed, ``SHADOW_OVER_LIMIT``).

``decide_batch(items, all_or_nothing=True)`` follows the limiter's rule: when one item is
denied (``OVER_LIMIT``, counted or scripted) nothing of the batch is counted and every other
item that fitted is ``NOT_ALL_ALLOWED``; when one item fails, the failure mode answers them
all. Every call is recorded in ``calls`` (one entry per item).

With FastAPI, ``ratelimit_client.fastapi.use_fake_limiter(app, fake)`` puts it in place of
the real client; elsewhere pass ``fake`` (or ``fake.sync()`` for code that takes a
``SyncLimiterClient``) where the client goes.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ratelimit_client.answers import FAIL_CLOSED_RETRY_AFTER_S
from ratelimit_client.decision import BatchItem, Decision, Reason
from ratelimit_client.errors import InvalidKey, Misconfigured
from ratelimit_client.outage import OutageLog
from ratelimit_client.settings import FailureMode

__all__ = ["Call", "FakeLimiter", "Outcome", "SyncFakeLimiter"]


class Outcome(enum.StrEnum):
    """A scripted answer."""

    ALLOW = "allow"
    DENY = "deny"
    FAIL = "fail"
    INVALID_KEY = "invalid_key"
    MISCONFIGURED = "misconfigured"
    SHADOW = "shadow"


class Call(NamedTuple):
    """One ``decide`` call as the fake received it."""

    key: str
    policy: str
    cost: int


class _Window(NamedTuple):
    limit: int
    window_s: float


class FakeLimiter:
    """Counts or answers as scripted; see the module docstring."""

    def __init__(
        self,
        limit: int = 10,
        window_s: float = 60.0,
        *,
        failure_mode: FailureMode = FailureMode.OPEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 0 or window_s <= 0:
            raise ValueError("limit must be >= 0 and window_s > 0")
        self._default = _Window(limit, window_s)
        self._policies: dict[str, _Window] = {}
        self._failure_mode = failure_mode
        self._clock = clock
        self._script: deque[Outcome] = deque()
        self._used: dict[tuple[str, str], tuple[int, int]] = {}  # -> (window index, used)
        self.calls: list[Call] = []
        self.outages = OutageLog(failure_mode.value)

    def set_policy(self, name: str, limit: int, window_s: float) -> None:
        """Count policy ``name`` at ``limit`` units per ``window_s`` seconds."""
        self._policies[name] = _Window(limit, window_s)

    def push(self, *outcomes: Outcome | str) -> None:
        """Queue answers for the next calls, in order (strings are ``Outcome`` values)."""
        self._script.extend(Outcome(outcome) for outcome in outcomes)

    def clear(self) -> None:
        """Forget counters, script and recorded calls."""
        self._script.clear()
        self._used.clear()
        self.calls.clear()

    def decide_now(self, key: str, policy: str = "", cost: int = 1) -> Decision:
        """The answer, synchronously (``decide`` awaits nothing else)."""
        name = policy or "default"
        self.calls.append(Call(key, name, cost))
        window = self._policies.get(name, self._default)
        outcome = self._script.popleft() if self._script else None
        if outcome is Outcome.INVALID_KEY:
            raise InvalidKey(f"key {key!r} refused (scripted)")
        if outcome is Outcome.MISCONFIGURED:
            raise Misconfigured(f"rate-limit policy {name!r} does not exist", "scripted")
        if outcome is Outcome.FAIL:
            self.outages.failed("scripted failure")
            if self._failure_mode is FailureMode.OPEN:
                return Decision(True, Reason.FAIL_OPEN, name)
            return Decision(False, Reason.FAIL_CLOSED, name, 0, 0, 0, FAIL_CLOSED_RETRY_AFTER_S)
        now = self._clock()
        index = math.floor(now / window.window_s)
        start, used = self._used.get((name, key), (index, 0))
        if start != index:
            used = 0
        reset_s = max(1, math.ceil((index + 1) * window.window_s - now))
        window_s = math.ceil(window.window_s)
        fits = used + cost <= window.limit
        if outcome is Outcome.ALLOW or (outcome is None and fits):
            used = min(used + cost, window.limit) if fits else used
            self._used[(name, key)] = (index, used)
            return Decision(
                True,
                Reason.WITHIN_LIMIT,
                name,
                window.limit,
                window.limit - used,
                reset_s,
                0,
                window_s,
            )
        self._used[(name, key)] = (index, used)
        shadow = outcome is Outcome.SHADOW
        return Decision(
            shadow,
            Reason.SHADOW_OVER_LIMIT if shadow else Reason.OVER_LIMIT,
            name,
            window.limit,
            window.limit - used,
            reset_s,
            reset_s,
            window_s,
        )

    def reset_now(self, key: str, policy: str = "") -> str:
        """Forget what ``key`` spent under ``policy``; returns the policy's name."""
        name = policy or "default"
        self._used.pop((name, key), None)
        return name

    async def reset(self, key: str, policy: str = "") -> str:
        """As ``LimiterClient.reset``."""
        return self.reset_now(key, policy)

    async def decide(self, key: str, policy: str = "", cost: int = 1) -> Decision:
        """As ``LimiterClient.decide``."""
        return self.decide_now(key, policy, cost)

    def decide_batch_now(
        self, items: Sequence[BatchItem], *, all_or_nothing: bool = False
    ) -> list[Decision]:
        """``decide_batch``'s answers, synchronously."""
        if not all_or_nothing:
            return [self.decide_now(*item) for item in items]
        before = dict(self._used)
        try:
            decisions = [self.decide_now(*item) for item in items]
        except (InvalidKey, Misconfigured):
            self._used = before  # a refused batch counts nothing
            raise
        failed = next((d for d in decisions if not d.counted), None)
        if failed is not None:
            self._used = before
            return [failed._replace(policy=d.policy) for d in decisions]
        denied = [d for d in decisions if d.reason is Reason.OVER_LIMIT]
        if not denied:
            return decisions
        self._used = before
        retry_after_s = max(d.retry_after_s for d in denied)
        return [
            d
            if not d.allowed or d.reason is not Reason.WITHIN_LIMIT
            else d._replace(
                allowed=False,
                reason=Reason.NOT_ALL_ALLOWED,
                remaining=self._left(d.policy, item.key),
                retry_after_s=retry_after_s,
                reset_s=retry_after_s,
            )
            for item, d in zip(items, decisions, strict=True)
        ]

    def _left(self, name: str, key: str) -> int:
        window = self._policies.get(name, self._default)
        index = math.floor(self._clock() / window.window_s)
        start, used = self._used.get((name, key), (index, 0))
        return window.limit - (used if start == index else 0)

    async def decide_batch(
        self, items: Sequence[BatchItem], *, all_or_nothing: bool = False
    ) -> list[Decision]:
        """As ``LimiterClient.decide_batch``."""
        return self.decide_batch_now(items, all_or_nothing=all_or_nothing)

    async def connect(self, timeout_s: float = 0.0) -> bool:
        """Always ready."""
        return True

    async def close(self) -> None:
        """Nothing to close."""

    def sync(self) -> SyncFakeLimiter:
        """A blocking view with ``SyncLimiterClient``'s interface, sharing this state."""
        return SyncFakeLimiter(self)


class SyncFakeLimiter:
    """``FakeLimiter`` with a blocking ``decide``, for code written for ``SyncLimiterClient``."""

    def __init__(self, fake: FakeLimiter) -> None:
        self.fake = fake
        self.outages = fake.outages

    def decide(self, key: str, policy: str = "", cost: int = 1) -> Decision:
        """As ``SyncLimiterClient.decide``."""
        return self.fake.decide_now(key, policy, cost)

    def decide_batch(
        self, items: Sequence[BatchItem], *, all_or_nothing: bool = False
    ) -> list[Decision]:
        """As ``SyncLimiterClient.decide_batch``."""
        return self.fake.decide_batch_now(items, all_or_nothing=all_or_nothing)

    def reset(self, key: str, policy: str = "") -> str:
        """As ``SyncLimiterClient.reset``."""
        return self.fake.reset_now(key, policy)

    def close(self) -> None:
        """Nothing to close."""
