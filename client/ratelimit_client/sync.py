"""A blocking client for scripts, Flask, Django and other threaded code.

One ``SyncLimiterClient`` per process is enough: it is thread-safe and keeps one channel
(round robin and retries as in ``channel``). Each ``decide`` is one ``ShouldAllow`` call
with the ``LIMITER_TIMEOUT_MS`` deadline; there is no coalescing (threads block on their
own calls). Answers, failure mode and errors are the asyncio client's::

    with SyncLimiterClient(LimiterSettings(limiter_addr="limiter:50051")) as limiter:
        if not limiter.decide("user:42", "default").allowed:
            ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType

import grpc

from ratelimit_client import proto
from ratelimit_client.answers import Answers
from ratelimit_client.batches import cached_group, requests_for, store_group
from ratelimit_client.channel import open_sync_channel
from ratelimit_client.decision import BatchItem, Decision, Reason
from ratelimit_client.deny_cache import DenyCache
from ratelimit_client.errors import failure_from
from ratelimit_client.metrics import NO_METRICS, ClientMetrics
from ratelimit_client.outage import OutageLog
from ratelimit_client.settings import LimiterSettings

__all__ = ["SyncLimiterClient"]


class SyncLimiterClient:
    """Blocking decisions; answers with the failure mode when the limiter cannot decide.
    ``metrics`` (``ratelimit_client.metrics``) hears of every call and decision."""

    def __init__(
        self, settings: LimiterSettings | None = None, *, metrics: ClientMetrics = NO_METRICS
    ) -> None:
        settings = settings if settings is not None else LimiterSettings()
        self._timeout_s = settings.timeout_s
        self._channel = open_sync_channel(settings)
        self._stub = proto.RateLimiterStub(self._channel)
        self._metrics = metrics
        self._answers = Answers(settings.failure_mode, metrics)
        # The outage log and the deny cache are not thread-safe on their own.
        self._lock = threading.Lock()
        size = settings.deny_cache_size
        self.deny_cache = DenyCache(size) if size else None

    @property
    def outages(self) -> OutageLog:
        """Requests answered by the failure mode (``total``) and whether one is ongoing."""
        return self._answers.outages

    def decide(self, key: str, policy: str = "", cost: int = 1) -> Decision:
        """As ``LimiterClient.decide`` (deny cache included), blocking for at most the
        deadline."""
        cache = self.deny_cache
        if cache is not None:
            with self._lock:
                sent = cache.clock()
                cached = cache.answer(key, policy, cost, sent)
                generation = cache.generation
            if cached is not None:
                self._metrics.answered(Reason.OVER_LIMIT)
                self._metrics.deny_cached()
                return cached
        request = proto.ShouldAllowRequest(key=key, policy=policy, cost=cost)
        started = time.perf_counter()
        try:
            reply = self._stub.ShouldAllow(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            failure = failure_from(exc)
            self._metrics.call("ShouldAllow", failure.code.name, time.perf_counter() - started, 1)
            with self._lock:
                return self._answers.failure(failure, policy)
        self._metrics.call("ShouldAllow", "OK", time.perf_counter() - started, 1)
        with self._lock:
            if cache is not None:
                cache.store(key, policy, cost, reply, sent, generation)
            return self._answers.reply(reply, policy)

    def decide_batch(
        self, items: Sequence[BatchItem], *, all_or_nothing: bool = False
    ) -> list[Decision]:
        """As ``LimiterClient.decide_batch``, blocking for at most the deadline: one
        ``ShouldAllowBatch`` call for the items the deny cache does not answer (with
        ``all_or_nothing``, for all of them or none). A call refused for one invalid item
        raises ``InvalidKey``/``Misconfigured``."""
        if not items:
            return []
        cache = self.deny_cache
        sent, generation = 0.0, 0
        local: list[Decision | None] = [None] * len(items)
        if cache is not None:
            with self._lock:
                sent, generation = cache.clock(), cache.generation
                if all_or_nothing:
                    group = cached_group(cache, items, sent)
                    if group is not None:
                        local = list(group)
                else:
                    local = [cache.answer(i.key, i.policy, i.cost, sent) for i in items]
            for decision in local:
                if decision is not None:
                    self._metrics.answered(decision.reason)
                    if decision.reason is Reason.OVER_LIMIT:
                        self._metrics.deny_cached()
        asked = [item for item, answer in zip(items, local, strict=True) if answer is None]
        if not asked:
            return [answer for answer in local if answer is not None]
        request = proto.ShouldAllowBatchRequest(
            requests=requests_for(asked), all_or_nothing=all_or_nothing
        )
        started = time.perf_counter()
        try:
            reply = self._stub.ShouldAllowBatch(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            failure = failure_from(exc)
            self._metrics.call(
                "ShouldAllowBatch", failure.code.name, time.perf_counter() - started, len(asked)
            )
            with self._lock:
                answers = iter([self._answers.failure(failure, item.policy) for item in asked])
            return [answer if answer is not None else next(answers) for answer in local]
        self._metrics.call("ShouldAllowBatch", "OK", time.perf_counter() - started, len(asked))
        replies = list(reply.responses)
        with self._lock:
            if cache is not None:
                store_group(cache, asked, replies, sent, generation)
            answers = iter(
                [
                    self._answers.reply(r, item.policy)
                    for item, r in zip(asked, replies, strict=True)
                ]
            )
        return [answer if answer is not None else next(answers) for answer in local]

    def reset(self, key: str, policy: str = "") -> str:
        """As ``LimiterClient.reset`` (dropping this client's cached denials of ``key``),
        blocking for at most the deadline."""
        started = time.perf_counter()
        try:
            reply = self._stub.Reset(
                proto.ResetRequest(key=key, policy=policy), timeout=self._timeout_s
            )
        except grpc.RpcError as exc:
            failure = failure_from(exc)
            self._metrics.call("Reset", failure.code.name, time.perf_counter() - started, 0)
            self._forget(key, policy)
            raise self._answers.reset_failure(failure, policy) from None
        self._metrics.call("Reset", "OK", time.perf_counter() - started, 0)
        self._forget(key, policy, reply.policy)
        return str(reply.policy)

    def _forget(self, key: str, policy: str, resolved: str = "") -> None:
        if self.deny_cache is not None:
            with self._lock:
                self.deny_cache.forget(key, policy, resolved)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> SyncLimiterClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
