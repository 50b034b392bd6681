"""The limiter's coalescer (``limiter_service.batching``): what travels together, and when.

The backend is the memory backend behind a gate the test opens, so a round trip stays "in
flight" exactly as long as the test wants; what matters is which decisions share a round
trip (``GatedBackend.trips``), never how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from limiter_service.batching import FULL_ENOUGH, Coalescer
from limiter_service.decision import Algorithm, Hit, Verdict
from tests.unit.conftest import FakeClock, make_policy
from tests.unit.test_limiter import RecordingBackend

POLICY = make_policy(Algorithm.FIXED_WINDOW, limit=1000)
# Bounds a wait that must end on its own long before it; a lingering call would hit it.
NEVER_S = 30.0


class GatedBackend(RecordingBackend):
    """The memory backend (as ``RecordingBackend``); each call records its keys, then waits
    for ``gate`` while ``gated``."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.trips: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gated = False

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        self.trips.append([hit.storage_key for hit in hits])
        if self.gated:
            await self.gate.wait()
        return await self.inner.decide(hits, deadline)


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


async def test_calls_wait_while_the_loop_has_other_work_and_travel_together(
    clock: FakeClock,
) -> None:
    backend = GatedBackend(clock)
    coalescer = Coalescer(backend, max_in_flight=3, window_s=3600.0)
    answers: list[asyncio.Future[list[Verdict]]] = []

    async def busy_caller() -> None:
        # Other work ready on every turn (as when RPCs keep arriving), asking as it goes.
        for n in range(30):
            if n % 10 == 0:
                answers.append(asyncio.ensure_future(coalescer.decide(hit(f"k{n}"), 1e9)))
            await asyncio.sleep(0)
        assert backend.trips == []  # the loop was never idle: nothing was sent yet

    await busy_caller()
    # Once nothing else is ready, everything goes in one round trip, long before the window.
    await asyncio.wait_for(asyncio.gather(*answers), NEVER_S)
    assert backend.trips == [["k0", "k10", "k20"]]


async def test_a_batch_big_enough_goes_at_once_even_on_a_busy_loop(clock: FakeClock) -> None:
    backend = GatedBackend(clock)
    coalescer = Coalescer(backend, max_in_flight=3, window_s=3600.0)
    big = [Hit(f"b{n}", POLICY, 1, False) for n in range(FULL_ENOUGH)]
    answer = asyncio.ensure_future(coalescer.decide(big, 1e9))
    for _ in range(5):  # other work stays ready on every turn
        await asyncio.sleep(0)
    assert backend.trips == [[hit.storage_key for hit in big]]
    assert len(await asyncio.wait_for(answer, NEVER_S)) == FULL_ENOUGH


async def test_a_call_with_several_hits_goes_at_once_even_on_a_busy_loop(
    clock: FakeClock,
) -> None:
    backend = GatedBackend(clock)
    coalescer = Coalescer(backend, max_in_flight=3, window_s=3600.0)
    single = asyncio.ensure_future(coalescer.decide(hit("a"), 1e9))
    batched = asyncio.ensure_future(coalescer.decide(hit("b") + hit("c"), 1e9))
    for _ in range(5):  # other work stays ready on every turn
        await asyncio.sleep(0)
    # Its caller batched already: it goes now, and takes the single call along.
    assert backend.trips == [["a", "b", "c"]]
    await asyncio.wait_for(asyncio.gather(single, batched), NEVER_S)


async def test_the_window_bounds_the_wait_on_a_loop_that_is_never_idle(
    clock: FakeClock,
) -> None:
    backend = GatedBackend(clock)
    coalescer = Coalescer(backend, max_in_flight=3, window_s=0.05)
    answer = asyncio.ensure_future(coalescer.decide(hit("a"), 1e9))
    # Other work is ready on every turn until the call has been answered: it is sent when
    # the window closes (a loop that never idles could otherwise hold it forever).
    async with asyncio.timeout(NEVER_S):
        while not answer.done():  # noqa: ASYNC110 - the busy loop is the point
            await asyncio.sleep(0)
    assert backend.trips == [["a"]]


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
