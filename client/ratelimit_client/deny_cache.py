"""Denials answered without a call: the client's copy of the limiter's deny cache.

When the limiter denies ``key`` under ``policy`` for cost ``c`` with ``retry_after = T``,
every request for the same key and policy with cost >= ``c`` is denied until ``T`` too
(other traffic can only push ``T`` later), so the client answers those itself, skipping the
gRPC call; this is what takes an abusive client's flood off the network and the limiter.

Contract:

- Keyed by ``(key, policy as asked)``; only ``OVER_LIMIT`` replies are stored (never a
  shadow policy's, an unlimited one's or a failure mode's answer).
- ``T`` is counted from when the request was *sent*, so an entry ends no later than the
  limiter's own ``T``.
- ``forget(key, ...)`` (the client's own ``reset``) drops the key's entries under the
  policy asked for and the one that answered, and any denial still on its way back
  (``generation``). What the client cannot see is not dropped: a ``Reset`` by another
  process, or a policy reload on the limiter; such an entry still ends at ``T``.
- At most ``size`` entries, least recently used evicted first. Not thread-safe: the asyncio
  client uses it on the event loop, the sync client under its lock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from ratelimit_client import proto
from ratelimit_client.decision import Decision, Reason

__all__ = ["DEFAULT_DENY_CACHE_SIZE", "DenyCache"]

DEFAULT_DENY_CACHE_SIZE = 1000
_OVER_LIMIT = int(Reason.OVER_LIMIT)


class _Entry(NamedTuple):
    cost: int  # the smallest cost known to be denied until ``until``
    until: float  # T, on this cache's clock (seconds)
    policy: str  # the policy that answered
    limit: int
    remaining: int
    window_s: int


class DenyCache:
    """Live denials by (key, policy asked for); ``clock`` is monotonic seconds."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("a deny cache holds at least one entry (size 0: use none)")
        self.size = size
        self.clock = clock
        self.generation = 0
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def answer(self, key: str, policy: str, cost: int, now: float) -> Decision | None:
        """The limiter's denial of this request at ``now`` if one is known to hold then
        (``retry_after_s`` = what is left of ``T``, rounded up); ``None``: ask it."""
        entry = self._entries.get((key, policy))
        if entry is None:
            return None
        if entry.until <= now:
            del self._entries[key, policy]
            return None
        if max(cost, 1) < entry.cost:
            return None
        self._entries.move_to_end((key, policy))
        retry_after_s = max(1, math.ceil(entry.until - now))
        return Decision(
            False,
            Reason.OVER_LIMIT,
            entry.policy,
            entry.limit,
            entry.remaining,
            retry_after_s,
            retry_after_s,
            entry.window_s,
        )

    def store(
        self,
        key: str,
        policy: str,
        cost: int,
        reply: proto.ShouldAllowResponse,
        sent: float,
        generation: int,
    ) -> None:
        """Remember ``reply`` to a request sent at ``sent`` (when the cache was at
        ``generation``) if it is an ``OVER_LIMIT`` denial; anything else is ignored."""
        if reply.allowed or reply.reason != _OVER_LIMIT or generation != self.generation:
            return
        retry = reply.retry_after
        retry_after = retry.seconds + retry.nanos / 1e9
        if retry_after <= 0:
            return
        window = reply.window
        entries = self._entries
        entries[key, policy] = _Entry(
            max(cost, 1),
            sent + retry_after,
            reply.policy or policy,
            reply.limit,
            reply.remaining,
            max(0, window.seconds + (1 if window.nanos > 0 else 0)),
        )
        entries.move_to_end((key, policy))
        if len(entries) > self.size:
            entries.popitem(last=False)

    def forget(self, key: str, policy: str, resolved: str = "") -> None:
        """Drop ``key``'s entries under ``policy`` and ``resolved`` (the policy that
        answered a reset), including one asked for by key alone that ``resolved``
        answered; denials on their way back are not stored."""
        self.generation += 1
        entries = self._entries
        entries.pop((key, policy), None)
        if resolved:
            entries.pop((key, resolved), None)
            by_key = entries.get((key, ""))
            if by_key is not None and by_key.policy == resolved:
                del entries[key, ""]

    def __len__(self) -> int:
        return len(self._entries)
