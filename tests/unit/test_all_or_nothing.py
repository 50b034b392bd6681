"""All-or-nothing batches on the memory backend and in the limiter, with an injected clock:
a group consumes only if none of its enforced requests is denied."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from limiter_service.backends.memory import MemoryBackend
from limiter_service.decision import Algorithm, Decision, FailureMode, Hit, Policy, Reason, Verdict
from limiter_service.deny_cache import DenyCache
from limiter_service.limiter import Limiter, Request
from limiter_service.metrics import PrometheusMetrics
from limiter_service.policies import PolicySet
from tests.unit.conftest import SECOND, FakeClock
from tests.unit.test_limiter import RecordingBackend

FW = Policy("fw", 10, 60 * SECOND, Algorithm.FIXED_WINDOW, 10, match="fw:")
SW = Policy("sw", 10, 60 * SECOND, Algorithm.SLIDING_WINDOW, 10, match="sw:")
TB = Policy("tb", 10, 10 * SECOND, Algorithm.TOKEN_BUCKET, 10, match="tb:")
SHADOW = Policy("shadow", 2, 60 * SECOND, Algorithm.FIXED_WINDOW, 2, match="sh:", shadow=True)
FREE = Policy("free", 1, 60 * SECOND, Algorithm.FIXED_WINDOW, 1, match="free:", unlimited=True)
POLICIES = [FW, SW, TB, SHADOW, FREE]


def make(
    clock: FakeClock, cache: bool = False, mode: FailureMode = FailureMode.OPEN
) -> tuple[Limiter, RecordingBackend]:
    backend = RecordingBackend(clock)
    limiter = Limiter(
        PolicySet(POLICIES),
        backend,
        deny_cache=DenyCache(100, clock) if cache else None,
        metrics=PrometheusMetrics(registry=CollectorRegistry()),
        failure_mode=mode,
    )
    return limiter, backend


async def peek(limiter: Limiter, key: str) -> int:
    """What is left on ``key`` (a dry run of cost 1, plus that cost)."""
    (decision,) = await limiter.decide([Request(key, dry_run=True)])
    return decision.remaining + 1


async def group(limiter: Limiter, *requests: Request) -> list[Decision]:
    return await limiter.decide(list(requests), all_or_nothing=True)


async def test_a_group_that_fits_consumes_every_item(clock: FakeClock) -> None:
    limiter, backend = make(clock)
    decisions = await group(limiter, Request("fw:a", cost=3), Request("tb:b", cost=4))
    assert [(d.allowed, d.reason, d.remaining) for d in decisions] == [
        (True, Reason.WITHIN_LIMIT, 7),
        (True, Reason.WITHIN_LIMIT, 6),
    ]
    assert backend.calls == [2]
    assert (await peek(limiter, "fw:a"), await peek(limiter, "tb:b")) == (7, 6)


@pytest.mark.parametrize("over", ["fw:x", "sw:x", "tb:x"])
async def test_one_item_over_its_limit_consumes_nothing_of_the_group(
    clock: FakeClock, over: str
) -> None:
    limiter, _ = make(clock)
    await limiter.decide([Request(over, cost=8)])
    decisions = await group(
        limiter, Request("fw:a", cost=3), Request(over, cost=5), Request("sw:b", cost=2)
    )
    assert [(d.allowed, d.reason) for d in decisions] == [
        (False, Reason.NOT_ALL_ALLOWED),
        (False, Reason.OVER_LIMIT),
        (False, Reason.NOT_ALL_ALLOWED),
    ]
    # Held items report what is available (nothing of the group counted) and the group's wait.
    assert [decisions[0].remaining, decisions[2].remaining] == [10, 10]
    assert decisions[1].retry_after_us > 0
    assert decisions[0].retry_after_us == decisions[2].retry_after_us == decisions[1].retry_after_us
    assert (
        await peek(limiter, "fw:a"),
        await peek(limiter, over),
        await peek(limiter, "sw:b"),
    ) == (
        10,
        2,
        10,
    )


async def test_the_same_key_twice_sees_its_own_tentative_consumption(clock: FakeClock) -> None:
    limiter, _ = make(clock)
    fits = await group(limiter, Request("fw:k", cost=4), Request("fw:k", cost=5))
    assert [d.remaining for d in fits] == [6, 1]
    denied = await group(limiter, Request("tb:k", cost=6), Request("tb:k", cost=6))
    assert [d.reason for d in denied] == [Reason.NOT_ALL_ALLOWED, Reason.OVER_LIMIT]
    assert denied[0].remaining == 10
    assert denied[0].reset_after_us == 0  # a full bucket: a dry run of cost 0 says so
    assert await peek(limiter, "tb:k") == 10
    assert await peek(limiter, "fw:k") == 1


async def test_held_numbers_are_those_of_a_cost_zero_dry_run(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    full = Hit("tb:full", TB, 10, False)
    await backend.decide([full], 0.0)
    clock.advance(3 * SECOND)  # 3 units back in the bucket
    hits = [
        Hit("tb:k", TB, 2, False, group=7),
        Hit("tb:k", TB, 1, True, group=7),
        Hit("tb:k", TB, 3, False, group=7),
        Hit("tb:full", TB, 4, False, group=7),
    ]
    await backend.decide([Hit("tb:k", TB, 4, False)], 0.0)
    verdicts = await backend.decide(hits, 0.0)
    (probe,) = await backend.decide([Hit("tb:k", TB, 0, True)], 0.0)
    assert verdicts[0] == Verdict(False, probe.remaining, probe.reset_after_us, 0, True)
    assert verdicts[2] == Verdict(False, probe.remaining, probe.reset_after_us, 0, True)
    # The dry run stays allowed, answered without the first item's tentative consumption.
    (alone,) = await backend.decide([Hit("tb:k", TB, 1, True)], 0.0)
    assert verdicts[1] == alone
    assert not verdicts[3].allowed and not verdicts[3].held


async def test_shadow_and_unlimited_items_do_not_block(clock: FakeClock) -> None:
    limiter, backend = make(clock)
    await limiter.decide([Request("sh:s", cost=2)])
    decisions = await group(
        limiter, Request("fw:a", cost=2), Request("sh:s", cost=1), Request("free:f", cost=5)
    )
    assert [(d.allowed, d.reason) for d in decisions] == [
        (True, Reason.WITHIN_LIMIT),
        (True, Reason.SHADOW_OVER_LIMIT),
        (True, Reason.UNLIMITED),
    ]
    assert backend.calls[-1] == 2  # the unlimited item never reaches the backend
    assert await peek(limiter, "fw:a") == 8


async def test_a_shadow_item_that_fitted_in_a_denied_group_is_not_counted(
    clock: FakeClock,
) -> None:
    limiter, _ = make(clock)
    decisions = await group(
        limiter, Request("sh:s", cost=1), Request("fw:a", cost=10), Request("fw:a")
    )
    assert [(d.allowed, d.reason) for d in decisions] == [
        (True, Reason.NOT_ALL_ALLOWED),  # a shadow policy never denies
        (False, Reason.NOT_ALL_ALLOWED),
        (False, Reason.OVER_LIMIT),
    ]
    assert await peek(limiter, "sh:s") == 2


async def test_dry_runs_consume_nothing_and_a_denied_dry_run_blocks(clock: FakeClock) -> None:
    limiter, _ = make(clock)
    decisions = await group(limiter, Request("fw:a", cost=3), Request("sw:b", cost=9, dry_run=True))
    assert [d.reason for d in decisions] == [Reason.WITHIN_LIMIT, Reason.WITHIN_LIMIT]
    assert (await peek(limiter, "fw:a"), await peek(limiter, "sw:b")) == (7, 10)
    await limiter.decide([Request("sw:b", cost=9)])
    decisions = await group(limiter, Request("fw:a", cost=3), Request("sw:b", cost=5, dry_run=True))
    assert [d.reason for d in decisions] == [Reason.NOT_ALL_ALLOWED, Reason.OVER_LIMIT]
    assert await peek(limiter, "fw:a") == 7


async def test_without_the_flag_items_are_independent(clock: FakeClock) -> None:
    limiter, _ = make(clock)
    await limiter.decide([Request("fw:b", cost=10)])
    decisions = await limiter.decide([Request("fw:a", cost=3), Request("fw:b")])
    assert [d.reason for d in decisions] == [Reason.WITHIN_LIMIT, Reason.OVER_LIMIT]
    assert await peek(limiter, "fw:a") == 7


async def test_concurrent_groups_share_a_round_trip_but_not_their_fate(clock: FakeClock) -> None:
    limiter, backend = make(clock)
    await limiter.decide([Request("fw:full", cost=10)])
    denied, admitted, single = await asyncio.gather(
        group(limiter, Request("fw:a"), Request("fw:full")),
        group(limiter, Request("fw:a"), Request("sw:b")),
        limiter.decide([Request("fw:a")]),
    )
    assert backend.calls[-1] == 5  # coalesced into one backend call
    assert [d.reason for d in denied] == [Reason.NOT_ALL_ALLOWED, Reason.OVER_LIMIT]
    assert [d.reason for d in admitted] == [Reason.WITHIN_LIMIT, Reason.WITHIN_LIMIT]
    assert single[0].reason is Reason.WITHIN_LIMIT
    assert await peek(limiter, "fw:a") == 8


async def test_a_cached_denial_answers_the_group_without_a_round_trip(clock: FakeClock) -> None:
    limiter, backend = make(clock, cache=True)
    await limiter.decide([Request("fw:full", cost=10)])
    (denial,) = await limiter.decide([Request("fw:full")])
    assert denial.reason is Reason.OVER_LIMIT
    calls = len(backend.calls)
    decisions = await group(
        limiter, Request("sw:a"), Request("fw:full"), Request("free:f"), Request("sh:s")
    )
    assert len(backend.calls) == calls
    assert [(d.allowed, d.reason) for d in decisions] == [
        (False, Reason.NOT_ALL_ALLOWED),
        (False, Reason.OVER_LIMIT),
        (True, Reason.UNLIMITED),
        (True, Reason.NOT_ALL_ALLOWED),
    ]
    assert decisions[0].retry_after_us == decisions[1].retry_after_us > 0
    assert await peek(limiter, "sw:a") == 10


async def test_a_denial_after_the_same_key_in_the_group_is_not_cached(clock: FakeClock) -> None:
    limiter, _ = make(clock, cache=True)
    decisions = await group(limiter, Request("fw:k", cost=6), Request("fw:k", cost=6))
    assert decisions[1].reason is Reason.OVER_LIMIT
    (alone,) = await limiter.decide([Request("fw:k", cost=6)])
    assert alone.reason is Reason.WITHIN_LIMIT  # the backend was asked, and it fits


@pytest.mark.parametrize(
    ("mode", "reason"),
    [(FailureMode.OPEN, Reason.FAIL_OPEN), (FailureMode.CLOSED, Reason.FAIL_CLOSED)],
)
async def test_a_group_falls_back_as_a_whole(
    clock: FakeClock, mode: FailureMode, reason: Reason
) -> None:
    limiter, backend = make(clock, mode=mode)
    backend.fail = True
    decisions = await group(limiter, Request("fw:a"), Request("free:f"), Request("tb:b"))
    assert [d.reason for d in decisions] == [reason, Reason.UNLIMITED, reason]
