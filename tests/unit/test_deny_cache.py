"""Deny cache: denials the backend has just made are answered without it, exactly as it
would have answered them (memory backend and one injected clock, so exactness is checked to
the microsecond)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from limiter_service.decision import Algorithm, Decision, Hit, Policy, Reason
from limiter_service.deny_cache import DenyCache
from limiter_service.limiter import Limiter, Request, Span
from limiter_service.metrics import PrometheusMetrics
from limiter_service.policies import PolicySet
from limiter_service.reload import PolicyReloader
from limiter_service.settings import Settings
from tests.unit.conftest import SECOND, FakeClock
from tests.unit.test_limiter import RecordingBackend

FW = Policy("fw", 5, 10 * SECOND, Algorithm.FIXED_WINDOW, 5, match="fw:")
SW = Policy("sw", 5, 10 * SECOND, Algorithm.SLIDING_WINDOW, 5, match="sw:")
TB = Policy("tb", 10, 10 * SECOND, Algorithm.TOKEN_BUCKET, 4, match="tb:")
OVERRIDABLE = Policy(
    "ov", 5, 10 * SECOND, Algorithm.FIXED_WINDOW, 5, match="ov:", allow_request_override=True
)
SHADOW = Policy("shadow", 4, 10 * SECOND, Algorithm.FIXED_WINDOW, 4, match="sh:", shadow=True)
POLICIES = [FW, SW, TB, OVERRIDABLE, SHADOW]


def make(
    clock: FakeClock, size: int | None = 100, policies: list[Policy] = POLICIES
) -> tuple[Limiter, RecordingBackend, PrometheusMetrics]:
    backend = RecordingBackend(clock)
    metrics = PrometheusMetrics(registry=CollectorRegistry())
    cache = DenyCache(size, clock) if size else None
    limiter = Limiter(PolicySet(policies), backend, deny_cache=cache, metrics=metrics)
    return limiter, backend, metrics


async def one(limiter: Limiter, key: str, cost: int = 1, **fields: object) -> Decision:
    (decision,) = await limiter.decide([Request(key, cost=cost, **fields)])  # type: ignore[arg-type]
    return decision


async def exhaust(limiter: Limiter, key: str) -> Decision:
    """Spend ``key``'s quota and return the first denial (made by the backend)."""
    for _ in range(100):
        decision = await one(limiter, key)
        if not decision.allowed:
            return decision
    raise AssertionError("never denied")


@pytest.mark.parametrize("key", ["fw:a", "sw:a", "tb:a"])
async def test_a_denied_key_is_answered_without_the_backend_until_retry_after(
    clock: FakeClock, key: str
) -> None:
    limiter, backend, _ = make(clock)
    first = await exhaust(limiter, key)
    asked = len(backend.calls)
    clock.advance(first.retry_after_us // 3)
    for _ in range(50):
        cached = await one(limiter, key)
        assert cached == first._replace(
            retry_after_us=first.retry_after_us - first.retry_after_us // 3,
            reset_after_us=max(0, first.reset_after_us - first.retry_after_us // 3),
        )
    assert len(backend.calls) == asked
    clock.advance(first.retry_after_us - first.retry_after_us // 3 - 1)
    assert (await one(limiter, key)).retry_after_us == 1
    assert len(backend.calls) == asked
    clock.advance(1)  # T itself: the backend decides again, and allows
    assert (await one(limiter, key)).allowed
    assert len(backend.calls) == asked + 1


async def test_a_smaller_cost_is_still_asked_and_a_larger_one_is_not(clock: FakeClock) -> None:
    limiter, backend, _ = make(clock)
    for _ in range(3):
        assert (await one(limiter, "fw:k")).allowed
    denied = await one(limiter, "fw:k", cost=3)  # 3 + 3 > 5
    assert denied.reason is Reason.OVER_LIMIT
    asked = len(backend.calls)
    assert not (await one(limiter, "fw:k", cost=4)).allowed
    assert len(backend.calls) == asked
    assert (await one(limiter, "fw:k", cost=2)).allowed  # the backend's answer
    assert len(backend.calls) == asked + 1
    # The key is now full: a cost-1 denial replaces the entry and covers every cost.
    assert not (await one(limiter, "fw:k", cost=1)).allowed
    asked = len(backend.calls)
    assert not (await one(limiter, "fw:k", cost=1)).allowed
    assert not (await one(limiter, "fw:k", cost=5)).allowed
    assert len(backend.calls) == asked


async def test_shadow_policies_are_never_answered_from_the_cache(clock: FakeClock) -> None:
    limiter, backend, _ = make(clock)
    for _ in range(4):
        await one(limiter, "sh:k")
    asked = len(backend.calls)
    for _ in range(5):
        decision = await one(limiter, "sh:k")
        assert decision.allowed and decision.reason is Reason.SHADOW_OVER_LIMIT
    assert len(backend.calls) == asked + 5
    assert len(limiter.deny_cache or ()) == 0


async def test_a_request_with_its_own_limit_is_not_denied_by_the_policy_quota(
    clock: FakeClock,
) -> None:
    limiter, backend, _ = make(clock)
    await exhaust(limiter, "ov:k")
    # Same window, so the same counter, but a higher limit: the backend must decide.
    assert (await one(limiter, "ov:k", limit=50)).allowed
    asked = len(backend.calls)
    assert not (await one(limiter, "ov:k")).allowed  # the policy's quota: still cached
    assert len(backend.calls) == asked
    await one(limiter, "ov:k", limit=5, window=Span(20))  # another counter altogether
    assert len(backend.calls) == asked + 1


async def test_dry_runs_are_answered_and_a_batch_asks_only_for_the_rest(
    clock: FakeClock,
) -> None:
    limiter, backend, _ = make(clock)
    await exhaust(limiter, "fw:x")
    assert not (await one(limiter, "fw:x", dry_run=True)).allowed
    calls = len(backend.calls)
    decisions = await limiter.decide([Request("fw:x"), Request("fw:y"), Request("fw:x", cost=2)])
    assert [d.allowed for d in decisions] == [False, True, False]
    assert backend.calls[calls:] == [1]  # one round trip, carrying fw:y only


async def test_reload_and_reset_drop_entries(clock: FakeClock, tmp_path: Path) -> None:
    limiter, backend, _ = make(clock)
    await exhaust(limiter, "fw:a")
    await exhaust(limiter, "fw:b")
    asked = len(backend.calls)
    assert await limiter.reset(Request("fw:a")) == "fw"
    assert (await one(limiter, "fw:a")).allowed  # asked: the counter is clear
    assert not (await one(limiter, "fw:b")).allowed  # still from the cache
    assert len(backend.calls) == asked + 1
    path = tmp_path / "policies.yaml"
    path.write_text("policies:\n  fw: {limit: 50, window: 10s, match: 'fw:'}\n")
    assert PolicyReloader(limiter, path).reload("test")
    assert (await one(limiter, "fw:b")).allowed  # the new limit, from the backend
    assert len(backend.calls) == asked + 2


async def test_a_denial_racing_a_reset_is_not_stored(clock: FakeClock) -> None:
    cache = DenyCache(10, clock)
    limiter, _, _ = make(clock)
    denial = await exhaust(limiter, "fw:a")
    hit = limiter.hit_for(Request("fw:a"))
    generation = cache.generation
    cache.forget(hit.storage_key)  # a Reset finished while the denial was on its way
    cache.store(hit, denial, clock(), generation)
    assert cache.answer(hit, clock()) is None
    cache.store(hit, denial, clock(), cache.generation)
    assert cache.answer(hit, clock()) is not None


async def test_the_least_recently_used_entry_is_evicted(clock: FakeClock) -> None:
    limiter, backend, _ = make(clock, size=2)
    for key in ("fw:a", "fw:b"):
        await exhaust(limiter, key)
    await one(limiter, "fw:a")  # a is now the most recently used
    await exhaust(limiter, "fw:c")  # evicts b
    asked = len(backend.calls)
    await one(limiter, "fw:a")
    await one(limiter, "fw:c")
    assert len(backend.calls) == asked
    await one(limiter, "fw:b")
    assert len(backend.calls) == asked + 1
    assert len(limiter.deny_cache or ()) == 2


async def test_cached_denials_hold_through_an_outage_and_failure_answers_are_not_cached(
    clock: FakeClock,
) -> None:
    limiter, backend, _ = make(clock)
    await exhaust(limiter, "fw:a")
    backend.fail = True
    assert (await one(limiter, "fw:a")).reason is Reason.OVER_LIMIT
    assert (await one(limiter, "fw:b")).reason is Reason.FAIL_OPEN
    assert len(limiter.deny_cache or ()) == 1


async def test_answers_are_counted_by_policy(clock: FakeClock) -> None:
    limiter, _, metrics = make(clock)
    await exhaust(limiter, "fw:a")
    for _ in range(3):
        await one(limiter, "fw:a")
    registry = metrics.registry
    assert registry.get_sample_value("ratelimit_deny_cache_answers_total", {"policy": "fw"}) == 3
    denied = {"policy": "fw", "outcome": "denied"}
    assert registry.get_sample_value("ratelimit_decisions_total", denied) == 4


async def test_without_a_cache_every_denial_is_asked(clock: FakeClock) -> None:
    limiter, backend, _ = make(clock, size=None)
    await exhaust(limiter, "fw:a")
    asked = len(backend.calls)
    for _ in range(3):
        await one(limiter, "fw:a")
    assert len(backend.calls) == asked + 3


def test_size_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().deny_cache_size == 10_000
    monkeypatch.setenv("LIMITER_DENY_CACHE_SIZE", "0")
    assert Settings().deny_cache_size == 0
    with pytest.raises(ValueError, match="at least one"):
        DenyCache(0)


VARIANTS = [
    *POLICIES,
    Policy("sw-odd", 13, 7 * SECOND + 1000, Algorithm.SLIDING_WINDOW, 13, match="swo:"),
    Policy("tb-odd", 7, 3 * SECOND + 1000, Algorithm.TOKEN_BUCKET, 7, match="tbo:"),
]


@pytest.mark.parametrize("seed", range(4))
async def test_differential_never_denies_what_the_backend_would_allow(seed: int) -> None:
    """Random keys, costs, dry runs, overrides and time steps through two limiters on one
    clock, one with the cache: every answer is the same (a cached ``retry_after`` may be
    shorter, never longer), and their counters stay equal."""
    rng = random.Random(seed)
    clock = FakeClock()
    plain, plain_backend, _ = make(clock, size=None, policies=VARIANTS)
    cached, cached_backend, metrics = make(clock, size=8, policies=VARIANTS)
    prefixes = ["fw:", "sw:", "tb:", "ov:", "sh:", "swo:", "tbo:"]
    keys = [f"{prefix}{n}" for prefix in prefixes for n in range(3)]
    served = 0
    for _ in range(3000):
        clock.advance(rng.choice([0, 0, 1, rng.randrange(50_000), rng.randrange(2 * SECOND)]))
        batch = []
        for _ in range(rng.choice([1, 1, 1, 3])):
            key = rng.choice(keys)
            fields: dict[str, object] = {"cost": rng.randint(1, 4)}
            if rng.random() < 0.1:
                fields["dry_run"] = True
            if key.startswith("ov:") and rng.random() < 0.3:
                fields["limit"] = rng.choice([5, 8])
            batch.append(Request(key, **fields))  # type: ignore[arg-type]
        before = len(cached_backend.calls), sum(cached_backend.calls)
        expected = await plain.decide(batch)
        got = await cached.decide(batch)
        served += len(batch) - (sum(cached_backend.calls) - before[1])
        for want, have in zip(expected, got, strict=True):
            assert have.allowed == want.allowed and have.reason == want.reason, (want, have)
            assert have.retry_after_us <= want.retry_after_us
            if have == want:
                continue
            assert have.remaining >= 0 and have.reset_after_us >= 0
    assert plain_backend.inner._entries == cached_backend.inner._entries
    assert served > 300
    total = sum(
        metrics.registry.get_sample_value("ratelimit_deny_cache_answers_total", {"policy": p.name})
        or 0
        for p in VARIANTS
    )
    assert total == served


def test_a_stored_denial_never_answers_a_shadow_or_unlimited_policy() -> None:
    cache = DenyCache(10, FakeClock())
    hit = Hit("rl:{fw:k}:fw", FW, 1, False)
    denial = Decision(False, 5, 0, 10 * SECOND, 10 * SECOND, "fw", Reason.OVER_LIMIT, FW.window_us)
    cache.store(hit, denial, cache.clock(), cache.generation)
    assert cache.answer(hit, cache.clock()) is not None
    # The same counter and quota, after a reload made the policy shadow (or unlimited).
    assert cache.answer(hit._replace(policy=replace(FW, shadow=True)), cache.clock()) is None
    assert cache.answer(hit._replace(policy=replace(FW, unlimited=True)), cache.clock()) is None
