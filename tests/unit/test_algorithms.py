"""The three algorithms on the memory backend with an injected clock."""

from __future__ import annotations

import pytest

from limiter_service.backends.memory import MemoryBackend
from limiter_service.decision import Algorithm, Hit, Policy, Verdict
from tests.unit.conftest import SECOND, FakeClock, make_policy


async def hit(
    backend: MemoryBackend, policy: Policy, key: str = "k", cost: int = 1, dry: bool = False
) -> Verdict:
    (verdict,) = await backend.decide([Hit(key, policy, cost, dry)], deadline=0.0)
    return verdict


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_allows_exactly_limit_then_denies(algorithm: Algorithm, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(algorithm, limit=10, window_s=60)
    verdicts = [await hit(backend, policy) for _ in range(15)]
    assert [v.allowed for v in verdicts] == [True] * 10 + [False] * 5
    assert [v.remaining for v in verdicts[:10]] == list(range(9, -1, -1))
    assert all(v.remaining == 0 and v.retry_after_us > 0 for v in verdicts[10:])
    assert all(v.retry_after_us == 0 for v in verdicts[:10])


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_denied_requests_consume_nothing(algorithm: Algorithm, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(algorithm, limit=10, window_s=60)
    assert (await hit(backend, policy, cost=8)).allowed
    denied = await hit(backend, policy, cost=5)
    assert not denied.allowed and denied.remaining == 2
    # The denied 5 took nothing: 2 still fit.
    assert (await hit(backend, policy, cost=2)).allowed


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_dry_run_answers_without_consuming(algorithm: Algorithm, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(algorithm, limit=3, window_s=60)
    dry = await hit(backend, policy, dry=True)
    assert dry.allowed and dry.remaining == 2
    assert len(backend) == 0
    for expected in (2, 1, 0):
        assert (await hit(backend, policy)).remaining == expected


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_retry_after_is_exactly_when_it_fits_again(
    algorithm: Algorithm, clock: FakeClock
) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(algorithm, limit=4, window_s=10)
    clock.advance(3 * SECOND)  # not at a window boundary
    for _ in range(4):
        assert (await hit(backend, policy)).allowed
    denied = await hit(backend, policy, cost=2)
    assert not denied.allowed
    clock.advance(denied.retry_after_us - 1)
    assert not (await hit(backend, policy, cost=2, dry=True)).allowed
    clock.advance(1)
    assert (await hit(backend, policy, cost=2)).allowed


async def test_fixed_window_resets_at_the_aligned_boundary(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.FIXED_WINDOW, limit=2, window_s=60)
    clock.advance(50 * SECOND)
    first = await hit(backend, policy)
    assert first.reset_after_us == 10 * SECOND
    await hit(backend, policy)
    denied = await hit(backend, policy)
    assert not denied.allowed and denied.retry_after_us == 10 * SECOND
    clock.advance(10 * SECOND)
    assert (await hit(backend, policy)).remaining == 1


async def test_sliding_window_weights_the_previous_window(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.SLIDING_WINDOW, limit=10, window_s=60)
    for _ in range(10):
        await hit(backend, policy)
    # 15 s into the next window, 45/60 of the previous 10 still count: 7.5 -> 2 fit.
    clock.advance(75 * SECOND)
    verdicts = [await hit(backend, policy) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert verdicts[0].remaining == 1  # floor(10 - 7.5 - 1)
    assert verdicts[1].remaining == 0
    assert verdicts[0].reset_after_us == 105 * SECOND  # end of the next window


async def test_sliding_window_forgets_after_two_windows(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.SLIDING_WINDOW, limit=5, window_s=60)
    for _ in range(5):
        await hit(backend, policy)
    clock.advance(120 * SECOND)
    assert (await hit(backend, policy)).remaining == 4


async def test_token_bucket_refills_one_unit_per_interval(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.TOKEN_BUCKET, limit=6, window_s=60)  # 1 unit / 10 s
    for _ in range(6):
        assert (await hit(backend, policy)).allowed
    denied = await hit(backend, policy)
    assert denied.retry_after_us == 10 * SECOND
    assert denied.reset_after_us == 60 * SECOND
    clock.advance(25 * SECOND)
    assert (await hit(backend, policy, dry=True)).remaining == 1  # 2 back, 1 after this one
    assert [(await hit(backend, policy)).allowed for _ in range(3)] == [True, True, False]


async def test_token_bucket_burst_caps_what_is_spent_at_once(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.TOKEN_BUCKET, limit=60, window_s=60, burst=5)
    verdicts = [await hit(backend, policy) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert verdicts[-1].retry_after_us == SECOND


async def test_keys_are_independent_and_expire(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.FIXED_WINDOW, limit=1, window_s=60)
    assert (await hit(backend, policy, key="a")).allowed
    assert (await hit(backend, policy, key="b")).allowed
    assert not (await hit(backend, policy, key="a")).allowed
    clock.advance(60 * SECOND)
    assert (await hit(backend, policy, key="a")).allowed


async def test_batch_items_see_earlier_items(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    policy = make_policy(Algorithm.FIXED_WINDOW, limit=2, window_s=60)
    verdicts = await backend.decide([Hit("k", policy, 1, False)] * 3, deadline=0.0)
    assert [v.allowed for v in verdicts] == [True, True, False]


@pytest.mark.parametrize("previous", [0, 4])
async def test_sliding_window_a_cost_above_the_limit_divides_by_nothing(
    clock: FakeClock, previous: int
) -> None:
    """This window's count is 0 (and the previous one's ``previous``): a cost above the
    limit never fits, and its retry is when both windows are gone."""
    policy = make_policy(Algorithm.SLIDING_WINDOW, limit=10, window_s=60)
    backend = MemoryBackend(clock)
    if previous:
        await backend.decide([Hit("k", policy, previous, False)], 0.0)
    clock.advance(60 * SECOND + 15 * SECOND)
    (verdict,) = await backend.decide([Hit("k", policy, 11, False)], 0.0)
    assert not verdict.allowed
    assert verdict.retry_after_us == 2 * 60 * SECOND - 15 * SECOND
