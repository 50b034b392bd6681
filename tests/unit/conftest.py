"""Unit-test helpers: an injectable clock and policy builders (no network)."""

from __future__ import annotations

import pytest

from limiter_service.decision import Algorithm, Policy

T0 = 1_763_700_000_000_000  # an arbitrary wall-clock instant, in microseconds
SECOND = 1_000_000


class FakeClock:
    """A clock the test moves by hand (microseconds)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, us: int) -> None:
        self.now += us


def make_policy(
    algorithm: Algorithm, limit: int = 10, window_s: int = 60, burst: int | None = None
) -> Policy:
    return Policy(
        name=f"p-{algorithm.value}",
        limit=limit,
        window_us=window_s * SECOND,
        algorithm=algorithm,
        burst=burst if burst is not None else limit,
    )


@pytest.fixture
def clock() -> FakeClock:
    # Start exactly at a window boundary for every window used in the tests (60 s, 10 s, 1 h).
    return FakeClock(T0 - T0 % (3600 * SECOND))
