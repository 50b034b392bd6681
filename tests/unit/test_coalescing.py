"""The limiter's coalescer (``limiter_service.batching``): what travels together, and when.

The backend is the memory backend behind a gate the test opens, so a round trip stays "in
flight" exactly as long as the test wants; what matters is which decisions share a round
trip (``GatedBackend.trips``), never how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from limiter_service.backends.memory import MemoryBackend
from limiter_service.batching import Coalescer
from limiter_service.decision import Algorithm, Hit, Verdict
from tests.unit.conftest import FakeClock, make_policy

POLICY = make_policy(Algorithm.FIXED_WINDOW, limit=1000)
# Bounds a wait that must end on its own long before it; a lingering call would hit it.
NEVER_S = 30.0


class GatedBackend:
    """The memory backend; each call records its keys, then waits for ``gate`` while
    ``gated``."""

    description = "gated"

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryBackend(clock)
        self.trips: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gated = False

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        self.trips.append([hit.storage_key for hit in hits])
        if self.gated:
            await self.gate.wait()
        return await self.inner.decide(hits, deadline)

    async def reset(self, storage_key: str, deadline: float) -> None:
        await self.inner.reset(storage_key, deadline)

    async def refresh(self, deadline: float) -> None:
        return None

    async def close(self) -> None:
        return None


def hit(key: str) -> list[Hit]:
    return [Hit(key, POLICY, 1, False)]


async def turns(count: int = 5) -> None:
    """Let the event loop run ``count`` turns."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_call_finding_the_backend_idle_is_sent_at_once_even_with_a_long_window(
    clock: FakeClock,
) -> None:
    backend = GatedBackend(clock)
    coalescer = Coalescer(backend, max_in_flight=3, window_s=3600.0)
    # A caller that waits for each answer before asking again never finds a round trip in
    # flight: each of its calls goes out on the next turn, not after the window.
    for n in range(5):
        verdicts = await asyncio.wait_for(coalescer.decide(hit(f"k{n}"), 1e9), NEVER_S)
        assert verdicts[0].allowed
    assert backend.trips == [[f"k{n}"] for n in range(5)]


async def test_calls_arriving_during_a_round_trip_wait_for_the_window_and_travel_together(
    clock: FakeClock,
) -> None:
    backend = GatedBackend(clock)
    backend.gated = True
    coalescer = Coalescer(backend, max_in_flight=3, window_s=1.0)
    first = asyncio.ensure_future(coalescer.decide(hit("a"), 1e9))
    await turns()
    assert backend.trips == [["a"]]  # idle backend: sent at once
    later = [asyncio.ensure_future(coalescer.decide(hit(key), 1e9)) for key in ("b", "c")]
    await turns()
    backend.gate.set()
    assert (await first)[0].allowed
    await turns()
    # A round trip slot is free and "a" has been answered, yet "b" and "c" wait for the
    # window that started when "a" was sent...
    assert backend.trips == [["a"]]
    assert not any(future.done() for future in later)
    late = asyncio.ensure_future(coalescer.decide(hit("d"), 1e9))
    # ... and whatever arrives meanwhile joins them: one round trip for three decisions.
    await asyncio.wait_for(asyncio.gather(*later, late), NEVER_S)
    assert backend.trips == [["a"], ["b", "c", "d"]]
    # Nothing is in flight now, but the last round trip had company: the next call still
    # waits for the window...
    alone = asyncio.ensure_future(coalescer.decide(hit("e"), 1e9))
    await turns()
    assert backend.trips == [["a"], ["b", "c", "d"]]
    await asyncio.wait_for(alone, NEVER_S)
    # ... and travels alone, so the one after it, finding nothing in flight, goes at once.
    assert (await asyncio.wait_for(coalescer.decide(hit("f"), 1e9), NEVER_S))[0].allowed
    assert backend.trips == [["a"], ["b", "c", "d"], ["e"], ["f"]]


async def test_without_a_window_calls_during_a_round_trip_are_sent_on_the_next_turn(
    clock: FakeClock,
) -> None:
    backend = GatedBackend(clock)
    backend.gated = True
    coalescer = Coalescer(backend, max_in_flight=3, window_s=0.0)
    first = asyncio.ensure_future(coalescer.decide(hit("a"), 1e9))
    await turns()
    second = asyncio.ensure_future(coalescer.decide(hit("b"), 1e9))
    await turns()
    assert backend.trips == [["a"], ["b"]]  # a free slot: no waiting for company
    backend.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), NEVER_S)


async def test_a_full_house_still_flushes_when_a_round_trip_ends(clock: FakeClock) -> None:
    backend = GatedBackend(clock)
    backend.gated = True
    coalescer = Coalescer(backend, max_in_flight=1, window_s=0.0)
    first = asyncio.ensure_future(coalescer.decide(hit("a"), 1e9))
    await turns()
    queued = [asyncio.ensure_future(coalescer.decide(hit(key), 1e9)) for key in ("b", "c")]
    await turns()
    assert backend.trips == [["a"]]  # the one slot is taken: they queue
    backend.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), NEVER_S)
    assert backend.trips == [["a"], ["b", "c"]]
