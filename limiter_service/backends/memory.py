"""The embedded backend: counts in this process's memory, with the same algorithms and
semantics as Redis (all-or-nothing groups included, ``groups``). The default when no Redis
is configured, and the reference the contract tests hold Redis to. Not shared between
processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from limiter_service.algorithms import STEPS, Fields
from limiter_service.decision import Hit, Verdict
from limiter_service.groups import blocks, runs, settle

Clock = Callable[[], int]
_SWEEP_EVERY = 10_000


def system_clock_us() -> int:
    """Wall-clock time in microseconds (windows align to it, as they do to Redis ``TIME``)."""
    return time.time_ns() // 1_000


class MemoryBackend:
    """Counters in a dict; expired entries are dropped lazily and by a periodic sweep."""

    description = "memory"

    def __init__(self, clock: Clock = system_clock_us) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[int, dict[str, float]]] = {}
        self._writes = 0

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        now = self._clock()
        verdicts: list[Verdict] = []
        for start, end in runs(hits):
            # A run (one hit, or one all-or-nothing group) decides on tentative state and
            # writes it only if nothing in it blocks.
            tentative: dict[str, tuple[dict[str, float], int]] = {}
            blocked = False
            for hit in hits[start:end]:
                written = tentative.get(hit.storage_key)
                if written is not None:
                    fields: Fields | None = written[0]
                else:
                    entry = self._entries.get(hit.storage_key)
                    fields = entry[1] if entry is not None and entry[0] > now else None
                step = STEPS[hit.policy.algorithm]
                verdict, new_fields, ttl_us = step(fields, now, hit.policy, hit.cost, hit.dry_run)
                if new_fields is not None:
                    tentative[hit.storage_key] = (new_fields, ttl_us)
                blocked = blocked or blocks(hit, verdict)
                verdicts.append(verdict)
            if blocked:
                continue
            for key, (new_fields, ttl_us) in tentative.items():
                self._entries[key] = (now + max(ttl_us, 1), new_fields)
                self._writes += 1
        if self._writes >= _SWEEP_EVERY:
            self._sweep(now)
        return settle(hits, verdicts)

    async def reset(self, storage_key: str, deadline: float) -> None:
        self._entries.pop(storage_key, None)

    def _sweep(self, now: int) -> None:
        self._writes = 0
        expired = [key for key, (expires, _) in self._entries.items() if expires <= now]
        for key in expired:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    async def refresh(self, deadline: float) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
