"""All-or-nothing batches and the deny cache, for both clients.

A batch sent with ``all_or_nothing`` is one group on the limiter: nothing of it is counted
unless every request fits. The clients' deny cache follows the limiter's own rule for such a
batch: when one of its requests has a cached denial, the whole batch is answered here,
without a call (that request ``OVER_LIMIT`` as cached, every other one ``NOT_ALL_ALLOWED``
with ``remaining`` 0 and the batch's longest ``retry_after_s``). Of the limiter's answers,
a denial is stored only for the first request of the batch on its key and policy: a later
one may have been denied because of an earlier request's tentative consumption, which did
not happen.
"""

from __future__ import annotations

from collections.abc import Sequence

from ratelimit_client import proto
from ratelimit_client.decision import BatchItem, Decision, Reason
from ratelimit_client.deny_cache import DenyCache

__all__ = ["cached_group", "requests_for", "store_group"]


def requests_for(items: Sequence[BatchItem]) -> list[proto.ShouldAllowRequest]:
    """The wire requests of ``items``."""
    return [
        proto.ShouldAllowRequest(key=item.key, policy=item.policy, cost=item.cost) for item in items
    ]


def cached_group(cache: DenyCache, items: Sequence[BatchItem], now: float) -> list[Decision] | None:
    """The answers to an all-or-nothing batch when the cache holds a denial of one of its
    requests at ``now``; ``None``: ask the limiter."""
    cached = [cache.answer(item.key, item.policy, item.cost, now) for item in items]
    if not any(cached):
        return None
    retry_after_s = max(answer.retry_after_s for answer in cached if answer is not None)
    return [
        answer
        if answer is not None
        else Decision(
            False, Reason.NOT_ALL_ALLOWED, item.policy, 0, 0, retry_after_s, retry_after_s, 0
        )
        for item, answer in zip(items, cached, strict=True)
    ]


def store_group(
    cache: DenyCache,
    items: Sequence[BatchItem],
    replies: Sequence[proto.ShouldAllowResponse | None],
    sent: float,
    generation: int,
) -> None:
    """Store the denials among ``replies`` (``None``: no reply) that hold on their own."""
    seen: set[tuple[str, str]] = set()
    for item, reply in zip(items, replies, strict=True):
        if reply is not None and (item.key, item.policy) not in seen:
            cache.store(item.key, item.policy, item.cost, reply, sent, generation)
        seen.add((item.key, item.policy))
