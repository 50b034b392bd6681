"""Denials answered without a round trip: a bounded LRU of keys Redis has just denied.

Why it is exact: when the backend denies a hit of cost ``c`` with ``retry_after = T``, every
hit on the same counter and quota with cost >= ``c`` is denied until ``T`` as well. Under
fixed window, sliding window and token bucket, other traffic only consumes (denied hits
consume nothing), and consumption can only push ``T`` later. So until ``T`` such a hit is
answered here, as the backend would have answered it, and never reaches Redis.

Contract:

- Entries are keyed by the counter's storage key and hold the quota (limit, burst) they
  were denied under: a request's own limit (``allow_request_override``) shares the counter
  of its window but is not denied at the same point, so a hit under another quota is a
  miss (and its denial replaces the entry). Only enforced (not shadow, not unlimited) policies are
  stored; a shadow policy's would-be denial is answered allowed by the backend every time.
- ``T`` is measured from when the hit was *sent* (``now`` taken before the round trip), not
  when the answer came back, so an entry ends no later than the backend's own ``T``; the
  only way a cached answer can be wrong is a request that would have *reached* Redis after
  ``T``: at most the one-way delay from the limiter to Redis (see the README).
- ``answer`` never answers a hit of a shadow or unlimited policy (an entry stored before a
  reload made the policy shadow is not used for it).
- ``clear()`` forgets everything (a policies or Envoy configuration reload),
  ``forget(storage_key)`` one counter (a ``Reset``); both bump ``generation``, and a denial
  whose round trip started before that is not stored (``store`` takes the generation seen
  when it was sent), so an answer racing a reload or a reset cannot bring an entry back.
- The clock is monotonic, integer microseconds, injectable (tests pass the memory
  backend's ``FakeClock``). Nothing here blocks or raises; everything runs on the event
  loop's thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from limiter_service.decision import Decision, Hit, Reason

__all__ = ["DEFAULT_DENY_CACHE_SIZE", "DenyCache", "monotonic_us"]

DEFAULT_DENY_CACHE_SIZE = 10_000
"""About 3 MB at most; see ``LIMITER_DENY_CACHE_SIZE`` in the README for why."""


def monotonic_us() -> int:
    """The monotonic clock in microseconds."""
    return time.monotonic_ns() // 1000


class _Entry(NamedTuple):
    limit: int  # the quota the denial was for (with ``burst``)
    burst: int
    cost: int  # the smallest cost known to be denied until ``until_us``
    until_us: int  # T, on this cache's clock
    reset_at_us: int  # when the quota is fully available again, on this cache's clock
    remaining: int  # as the backend reported it with the denial


class DenyCache:
    """At most ``size`` live denials (``size`` >= 1), least recently used evicted first."""

    def __init__(self, size: int, clock: Callable[[], int] = monotonic_us) -> None:
        if size < 1:
            raise ValueError("a deny cache holds at least one entry (size 0: use none)")
        self.size = size
        self.clock = clock
        self.generation = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def answer(self, hit: Hit, now_us: int) -> Decision | None:
        """The backend's denial of ``hit`` at ``now_us``, if one is known to hold then;
        ``None``: the backend must decide. A shadow or unlimited policy is never answered
        here (its would-be denial is allowed), whatever its counter's entry says: the
        policy may have become shadow since the denial was stored."""
        policy = hit.policy
        if policy.shadow or policy.unlimited:
            return None
        key = hit.storage_key
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.until_us <= now_us:
            del self._entries[key]
            return None
        if hit.cost < entry.cost or policy.limit != entry.limit or policy.burst != entry.burst:
            return None
        self._entries.move_to_end(key)
        return Decision(
            False,
            policy.limit,
            entry.remaining,
            max(0, entry.reset_at_us - now_us),
            entry.until_us - now_us,
            policy.name,
            Reason.OVER_LIMIT,
            policy.window_us,
        )

    def store(self, hit: Hit, decision: Decision, sent_us: int, generation: int) -> None:
        """Remember the backend's answer to ``hit`` (sent at ``sent_us``, when the cache was
        at ``generation``) if it is an enforced denial (``OVER_LIMIT``: not shadow, not a
        failure mode); anything else, or a stale generation, is ignored. A newer denial
        replaces an older one: it is for a smaller cost or another quota."""
        if decision.reason is not Reason.OVER_LIMIT or generation != self.generation:
            return
        if decision.retry_after_us <= 0:
            return
        policy = hit.policy
        key = hit.storage_key
        entries = self._entries
        entries[key] = _Entry(
            policy.limit,
            policy.burst,
            hit.cost,
            sent_us + decision.retry_after_us,
            sent_us + decision.reset_after_us,
            decision.remaining,
        )
        entries.move_to_end(key)
        if len(entries) > self.size:
            entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry, and every denial still on its way back."""
        self.generation += 1
        self._entries.clear()

    def forget(self, storage_key: str) -> None:
        """Forget the counter ``storage_key`` (every quota on it), and every denial still on
        its way back."""
        self.generation += 1
        self._entries.pop(storage_key, None)

    def until_us(self, storage_key: str) -> int | None:
        """When the entry for ``storage_key`` ends (its ``T`` on this clock), if there is one."""
        entry = self._entries.get(storage_key)
        return None if entry is None else entry.until_us

    def __len__(self) -> int:
        return len(self._entries)
