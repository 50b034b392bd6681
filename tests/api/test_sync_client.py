"""``SyncLimiterClient`` against a real limiter process (the shared one: memory backend,
``SHARED_POLICIES``): counted decisions, the failure mode when nothing listens, and the
limiter's refusals as ``InvalidKey`` / ``Misconfigured``."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from devstack import free_port
from ratelimit_client import (
    Decision,
    FailureMode,
    InvalidKey,
    LimiterSettings,
    Misconfigured,
    Reason,
    SyncLimiterClient,
)
from tests.api.api_stack import LIMIT, RELAXED_TIMEOUT_MS, WINDOW_S, SharedStack

pytestmark = pytest.mark.integration


@pytest.fixture
def limiter(shared_stack: SharedStack) -> Iterator[SyncLimiterClient]:
    settings = LimiterSettings(
        limiter_addr=shared_stack.limiter.address, timeout_ms=RELAXED_TIMEOUT_MS
    )
    with SyncLimiterClient(settings) as client:
        yield client


def test_allowed_then_denied_with_the_policys_counters(limiter: SyncLimiterClient) -> None:
    decisions = [limiter.decide("sync:counts", "default") for _ in range(LIMIT + 3)]
    assert [d.reason for d in decisions] == [Reason.WITHIN_LIMIT] * LIMIT + [Reason.OVER_LIMIT] * 3
    assert [d.allowed for d in decisions] == [True] * LIMIT + [False] * 3
    assert [d.remaining for d in decisions] == [*range(LIMIT - 1, -1, -1), 0, 0, 0]
    assert {(d.policy, d.limit, d.window_s) for d in decisions} == {("default", LIMIT, WINDOW_S)}
    for denied in decisions[LIMIT:]:
        assert denied.retry_after_s >= 1 and denied.reset_s == denied.retry_after_s
    assert limiter.outages.total == 0


def test_keys_and_policies_are_counted_apart(limiter: SyncLimiterClient) -> None:
    logins = [limiter.decide("sync:apart", "login").allowed for _ in range(6)]
    assert logins == [True] * 5 + [False]  # login: 5 per 90 s
    other = limiter.decide("sync:apart", "default")
    assert (other.allowed, other.remaining) == (True, LIMIT - 1)
    assert limiter.decide("sync:apart-other", "login").remaining == 4


def test_cost_is_charged_and_a_denied_request_consumes_nothing(
    limiter: SyncLimiterClient,
) -> None:
    first = limiter.decide("sync:cost", "default", cost=4)
    too_much = limiter.decide("sync:cost", "default", cost=7)
    rest = limiter.decide("sync:cost", "default", cost=6)
    assert (first.allowed, first.remaining) == (True, LIMIT - 4)
    assert (too_much.reason, too_much.remaining) == (Reason.OVER_LIMIT, LIMIT - 4)
    assert (rest.allowed, rest.remaining) == (True, 0)


def test_threads_share_one_client_and_one_budget(limiter: SyncLimiterClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(lambda _: limiter.decide("sync:threads"), range(3 * LIMIT)))
    assert sum(d.allowed for d in decisions) == LIMIT
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(LIMIT))
    assert {d.reason for d in decisions} == {Reason.WITHIN_LIMIT, Reason.OVER_LIMIT}


@pytest.mark.parametrize(
    ("key", "reason"),
    [("", "key must not be empty"), ("k" * 513, "key is 513 bytes; the maximum is 512")],
    ids=["empty", "oversized"],
)
def test_a_refused_key_raises_invalid_key(
    limiter: SyncLimiterClient, key: str, reason: str
) -> None:
    with pytest.raises(InvalidKey) as raised:
        limiter.decide(key, "default")
    assert raised.value.reason == reason
    assert limiter.outages.total == 0  # a refusal is an answer, not an outage


def test_an_unknown_policy_raises_misconfigured(limiter: SyncLimiterClient) -> None:
    with pytest.raises(Misconfigured) as raised:
        limiter.decide("sync:policy", "no-such-policy")
    assert raised.value.detail == "rate-limit policy 'no-such-policy' does not exist"
    assert "known policies: default, login, burst" in raised.value.log_detail
    assert not isinstance(raised.value, InvalidKey)


def test_a_cost_above_the_capacity_is_misconfigured_not_a_bad_key(
    limiter: SyncLimiterClient,
) -> None:
    with pytest.raises(Misconfigured) as raised:
        limiter.decide("sync:capacity", "default", cost=LIMIT + 1)
    assert not isinstance(raised.value, InvalidKey)
    assert raised.value.detail == "rate-limit policy 'default' refused the request"
    assert f"exceeds the capacity {LIMIT}" in raised.value.log_detail


@pytest.mark.parametrize(
    ("mode", "allowed", "reason", "retry_after_s"),
    [
        (FailureMode.OPEN, True, Reason.FAIL_OPEN, 0),
        (FailureMode.CLOSED, False, Reason.FAIL_CLOSED, 1),
    ],
)
def test_nothing_listening_is_answered_by_the_failure_mode(
    mode: FailureMode, allowed: bool, reason: Reason, retry_after_s: int
) -> None:
    settings = LimiterSettings(limiter_addr=f"127.0.0.1:{free_port()}", failure_mode=mode)
    with SyncLimiterClient(settings) as client:
        decisions = [client.decide(f"sync:down-{n}", "default") for n in range(3)]
        assert client.outages.total == 3
        assert client.outages.in_outage
    assert decisions == [Decision(allowed, reason, "default", retry_after_s=retry_after_s)] * 3
    assert not any(d.counted for d in decisions)
