"""Limiter: validation before the backend, one backend call per request or batch, failure
modes within the deadline, coalescing of concurrent calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from limiter_service.backends.memory import MemoryBackend
from limiter_service.decision import FailureMode, Hit, Reason, Verdict
from limiter_service.errors import BackendUnavailable, InvalidRequest, UnknownPolicy
from limiter_service.limiter import MAX_BATCH, Limiter, Request
from limiter_service.policies import default_policies
from tests.unit.conftest import FakeClock


class RecordingBackend:
    """The memory backend, counting calls; can be told to hang or to fail."""

    description = "recording"

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryBackend(clock)
        self.calls: list[int] = []
        self.deadlines: list[float] = []
        self.hang = False
        self.fail = False

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        self.calls.append(len(hits))
        self.deadlines.append(deadline)
        if self.fail:
            raise BackendUnavailable("connection refused")
        if self.hang:
            await asyncio.sleep(3600)
        return await self.inner.decide(hits, deadline)

    async def reset(self, storage_key: str, deadline: float) -> None:
        await self.inner.reset(storage_key, deadline)

    async def refresh(self, deadline: float) -> None:
        return None

    async def close(self) -> None:
        return None


# The monotonic instant (seconds) the limiter's injected clock reports.
NOW_S = 1000.0


def make_limiter(
    backend: RecordingBackend, mode: FailureMode = FailureMode.OPEN, timeout_s: float = 0.05
) -> Limiter:
    return Limiter(
        default_policies(10, 60),
        backend,
        max_key_bytes=16,
        failure_mode=mode,
        decision_timeout_s=timeout_s,
        clock=lambda: NOW_S,
    )


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (Request(""), InvalidRequest, "key must not be empty"),
        (Request("k" * 17), InvalidRequest, "17 bytes; the maximum is 16"),
        (Request("é" * 9), InvalidRequest, "18 bytes"),
        (Request("k", cost=11), InvalidRequest, "capacity 10"),
        (Request("k", policy="gold"), UnknownPolicy, "known policies: default"),
    ],
)
async def test_bad_requests_never_reach_the_backend(
    clock: FakeClock, request_: Request, error: type[Exception], message: str
) -> None:
    backend = RecordingBackend(clock)
    limiter = make_limiter(backend)
    with pytest.raises(error, match=message):
        await limiter.decide([Request("fine"), request_])
    assert backend.calls == []


async def test_oversized_batch_is_refused(clock: FakeClock) -> None:
    backend = RecordingBackend(clock)
    with pytest.raises(InvalidRequest, match=f"maximum is {MAX_BATCH}"):
        await make_limiter(backend).decide([Request("k")] * (MAX_BATCH + 1))
    assert backend.calls == []


async def test_cost_zero_counts_as_one_and_batch_is_one_call(clock: FakeClock) -> None:
    backend = RecordingBackend(clock)
    decisions = await make_limiter(backend).decide([Request("k", cost=0)] * 12)
    assert backend.calls == [12]
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert [d.reason for d in decisions[10:]] == [Reason.OVER_LIMIT] * 2
    assert all(d.policy == "default" and d.limit == 10 for d in decisions)


@pytest.mark.parametrize(
    ("mode", "allowed", "reason"),
    [(FailureMode.OPEN, True, Reason.FAIL_OPEN), (FailureMode.CLOSED, False, Reason.FAIL_CLOSED)],
)
@pytest.mark.parametrize("trouble", ["hang", "fail"])
async def test_failure_mode_answers_within_the_deadline(
    clock: FakeClock, mode: FailureMode, allowed: bool, reason: Reason, trouble: str
) -> None:
    backend = RecordingBackend(clock)
    setattr(backend, trouble, True)
    limiter = make_limiter(backend, mode, timeout_s=0.05)
    (decision,) = await limiter.decide([Request("k")], time_remaining_s=10.0)
    # The backend was given the decision timeout, not the caller's 10 s (the hanging one
    # was cut off there: the answer came from the failure mode, not a 3600 s sleep).
    assert backend.deadlines == [NOW_S + 0.05]
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert limiter.fallbacks.total == 1


async def test_caller_deadline_shorter_than_decision_timeout_wins(clock: FakeClock) -> None:
    backend = RecordingBackend(clock)
    backend.hang = True
    limiter = make_limiter(backend, timeout_s=30.0)
    (decision,) = await limiter.decide([Request("k")], time_remaining_s=0.1)
    # 75 % of the caller's 100 ms, far below the 30 s decision timeout.
    assert backend.deadlines == [pytest.approx(NOW_S + 0.075, abs=1e-9)]
    assert decision.reason is Reason.FAIL_OPEN


async def test_concurrent_requests_share_round_trips(clock: FakeClock) -> None:
    backend = RecordingBackend(clock)
    limiter = Limiter(default_policies(100, 60), backend, max_in_flight=1)
    results = await asyncio.gather(*(limiter.decide([Request("k")]) for _ in range(150)))
    # All 150 arrive in one loop turn, so they share a single round trip.
    assert backend.calls == [150]
    allowed = [d for (d,) in results if d.allowed]
    assert len(allowed) == 100


async def test_round_trips_are_capped_in_size_but_requests_stay_whole(clock: FakeClock) -> None:
    backend = RecordingBackend(clock)
    limiter = Limiter(default_policies(10_000, 60), backend, max_in_flight=1)
    batches = [[Request(f"k{n}")] * 600 for n in range(3)]
    results = await asyncio.gather(*(limiter.decide(batch) for batch in batches))
    assert backend.calls == [600, 600, 600]  # 1800 would run one long script
    assert all(len(result) == 600 and result[-1].remaining == 9_400 for result in results)
