"""The asyncio client of ``ratelimit.v1.RateLimiter``: one channel per process, decisions
coalesced into as few calls as the load allows (``coalescing``), and the failure mode when
no decision can be had.

Every call, retries included, has the ``LIMITER_TIMEOUT_MS`` deadline (see ``channel``
for balancing and retries). Create the client inside the running event loop (an app's
lifespan) and ``close()`` it there, or use it as ``async with``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from types import TracebackType

import grpc

from ratelimit_client import proto
from ratelimit_client.answers import Answers
from ratelimit_client.batches import cached_group, requests_for, store_group
from ratelimit_client.channel import open_aio_channel
from ratelimit_client.coalescing import CallCoalescer
from ratelimit_client.decision import BatchItem, Decision, Reason
from ratelimit_client.deny_cache import DenyCache
from ratelimit_client.errors import RpcFailure, failure_from
from ratelimit_client.metrics import NO_METRICS, ClientMetrics
from ratelimit_client.outage import OutageLog
from ratelimit_client.settings import LimiterSettings

__all__ = ["CONNECT_TIMEOUT_S", "LimiterClient"]

CONNECT_TIMEOUT_S = 1.0

log = logging.getLogger("ratelimit_client")


class LimiterClient:
    """Asks the limiter for decisions; answers with the failure mode when it cannot.
    ``metrics`` (``ratelimit_client.metrics``) hears of every call and decision."""

    def __init__(
        self, settings: LimiterSettings | None = None, *, metrics: ClientMetrics = NO_METRICS
    ) -> None:
        settings = settings if settings is not None else LimiterSettings()
        self._target = settings.limiter_addr
        self._channel = open_aio_channel(settings)
        self._timeout_s = settings.timeout_s
        self._metrics = metrics
        stub = self._stub = proto.RateLimiterStub(self._channel)
        self._calls = CallCoalescer(
            stub.ShouldAllow,
            stub.ShouldAllowBatch,
            settings.timeout_s,
            settings.max_in_flight,
            metrics=metrics,
        )
        self._answers = Answers(settings.failure_mode, metrics)
        size = settings.deny_cache_size
        self.deny_cache = DenyCache(size) if size else None

    @property
    def outages(self) -> OutageLog:
        """Requests answered by the failure mode (``total``) and whether one is ongoing."""
        return self._answers.outages

    async def decide(self, key: str, policy: str = "", cost: int = 1) -> Decision:
        """Charge ``cost`` units of ``policy`` to ``key`` and say whether that fits.

        ``policy`` ``""`` lets the limiter choose by key. Returns within the deadline (plus
        scheduling noise). When the limiter cannot decide (unreachable, late, or its own
        backend down) the decision's reason is ``FAIL_OPEN`` or ``FAIL_CLOSED``. Raises
        ``InvalidKey`` when the limiter refuses ``key`` and ``Misconfigured`` for a
        server-side mistake (e.g. unknown ``policy``).

        A request the limiter has just denied for this cost or less is answered
        ``OVER_LIMIT`` without a call until its ``retry_after`` (``deny_cache``).
        """
        cache = self.deny_cache
        if cache is None:
            reply = await self._calls.call(
                proto.ShouldAllowRequest(key=key, policy=policy, cost=cost)
            )
            if isinstance(reply, RpcFailure):
                return self._answers.failure(reply, policy)
            return self._answers.reply(reply, policy)
        sent = cache.clock()
        cached = cache.answer(key, policy, cost, sent)
        if cached is not None:
            self._metrics.answered(Reason.OVER_LIMIT)
            self._metrics.deny_cached()
            return cached
        generation = cache.generation
        reply = await self._calls.call(proto.ShouldAllowRequest(key=key, policy=policy, cost=cost))
        if isinstance(reply, RpcFailure):
            return self._answers.failure(reply, policy)
        cache.store(key, policy, cost, reply, sent, generation)
        return self._answers.reply(reply, policy)

    async def decide_batch(
        self, items: Sequence[BatchItem], *, all_or_nothing: bool = False
    ) -> list[Decision]:
        """Decide ``items`` (at most 1000), one decision each, in order.

        Without ``all_or_nothing`` each item is ``decide``'d on its own (coalesced with
        other requests in flight). With it the items are one group: sent alone in one
        ``ShouldAllowBatch``, counted only if every one fits; when one is ``OVER_LIMIT``
        nothing is counted and the others that fitted are ``NOT_ALL_ALLOWED`` (``batches``
        for the deny cache). A failed call answers every item with the failure mode; an
        invalid item raises ``InvalidKey``/``Misconfigured`` for the whole group.
        """
        if not all_or_nothing:
            return list(await asyncio.gather(*(self.decide(*item) for item in items)))
        if not items:
            return []
        cache = self.deny_cache
        sent, generation = 0.0, 0
        if cache is not None:
            sent, generation = cache.clock(), cache.generation
            local = cached_group(cache, items, sent)
            if local is not None:
                for decision in local:
                    self._metrics.answered(decision.reason)
                    if decision.reason is Reason.OVER_LIMIT:
                        self._metrics.deny_cached()
                return local
        outcomes = await self._calls.call_group(requests_for(items))
        decisions = [
            self._answers.failure(outcome, item.policy)
            if isinstance(outcome, RpcFailure)
            else self._answers.reply(outcome, item.policy)
            for item, outcome in zip(items, outcomes, strict=True)
        ]
        if cache is not None:
            replies = [None if isinstance(o, RpcFailure) else o for o in outcomes]
            store_group(cache, items, replies, sent, generation)
        return decisions

    async def reset(self, key: str, policy: str = "") -> str:
        """Clear what ``key`` has spent under ``policy`` (``""``: chosen by key), e.g. after
        a successful login; returns the policy's name. One call, with the deadline; raises
        ``InvalidKey``/``Misconfigured`` as ``decide`` does, and ``ResetFailed`` when the
        limiter or its backend did not answer in time (nothing may have been cleared).
        Drops this client's cached denials of ``key`` under that policy either way."""
        started = time.perf_counter()
        try:
            reply = await self._stub.Reset(
                proto.ResetRequest(key=key, policy=policy), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            self._metrics.call("Reset", exc.code().name, time.perf_counter() - started, 0)
            if self.deny_cache is not None:
                self.deny_cache.forget(key, policy)
            raise self._answers.reset_failure(failure_from(exc), policy) from None
        self._metrics.call("Reset", "OK", time.perf_counter() - started, 0)
        if self.deny_cache is not None:
            self.deny_cache.forget(key, policy, reply.policy)
        return str(reply.policy)

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Start connecting and wait up to ``timeout_s`` for a ready replica, so the first
        requests do not pay for the handshake; returns whether one is ready. Never raises:
        a limiter that is down at start is an outage like any other."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            log.warning(
                "rate limiter at %s not ready after %.1f s; failing %s until it is",
                self._target,
                timeout_s,
                self.outages.mode,
            )
            return False
        return True

    async def close(self) -> None:
        """Close the channel; calls still running fail (and get the failure mode)."""
        await self._channel.close()
        await self._calls.close()

    async def __aenter__(self) -> LimiterClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
