"""``decide_batch`` of both clients against a real limiter process (memory backend): an
all-or-nothing batch counts nothing when one request is denied, travels alone, and the
deny cache answers it whole; without the flag the requests are independent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import ProcessGroup
from ratelimit_client import (
    BatchItem,
    LimiterClient,
    LimiterSettings,
    Reason,
    SyncLimiterClient,
)
from tests.api.api_stack import launch_limiter

pytestmark = pytest.mark.integration

POLICIES = """\
policies:
  default: {limit: 10, window: 1h}
  bucket: {limit: 5, window: 1h, algorithm: token_bucket}
"""


class Calls:
    """A ``ClientMetrics`` that keeps each call's method and size."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def call(self, method: str, code: str, seconds: float, decisions: int) -> None:
        self.calls.append((method, decisions))

    def answered(self, reason: Reason, cause: str = "") -> None:
        pass

    def deny_cached(self) -> None:
        pass


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("batch-client")
    policies = workdir / "policies.yaml"
    policies.write_text(POLICIES)
    with ProcessGroup(workdir / "logs") as group:
        yield launch_limiter(group, "limiter", {"LIMITER_POLICIES": str(policies)}).address


def settings(address: str, deny_cache_size: int = 0) -> LimiterSettings:
    return LimiterSettings(limiter_addr=address, timeout_ms=5000, deny_cache_size=deny_cache_size)


def key() -> str:
    return f"user:{uuid.uuid4().hex}"


async def test_an_all_or_nothing_batch_counts_nothing_when_one_is_denied(address: str) -> None:
    calls = Calls()
    async with LimiterClient(settings(address), metrics=calls) as client:
        a, b = key(), key()
        await client.decide(b, "bucket", 4)
        group = [BatchItem(a, cost=3), BatchItem(b, "bucket", 2), BatchItem(a, cost=2)]
        denied = await client.decide_batch(group, all_or_nothing=True)
        assert [(d.allowed, d.reason) for d in denied] == [
            (False, Reason.NOT_ALL_ALLOWED),
            (False, Reason.OVER_LIMIT),
            (False, Reason.NOT_ALL_ALLOWED),
        ]
        assert denied[0].remaining == 10
        assert denied[0].retry_after_s == denied[1].retry_after_s >= 1
        assert calls.calls[-1] == ("ShouldAllowBatch", 3)
        assert (await client.decide(a, cost=10)).allowed, "nothing of the group was counted"

        c = key()
        admitted = await client.decide_batch(
            [BatchItem(c, cost=3), BatchItem(key(), "bucket", 1)], all_or_nothing=True
        )
        assert [(d.allowed, d.reason) for d in admitted] == [(True, Reason.WITHIN_LIMIT)] * 2
        assert (await client.decide(c, cost=8)).reason is Reason.OVER_LIMIT


async def test_without_the_flag_each_request_is_decided_on_its_own(address: str) -> None:
    async with LimiterClient(settings(address)) as client:
        a, b = key(), key()
        await client.decide(b, "bucket", 4)
        decisions = await client.decide_batch([BatchItem(a, cost=3), BatchItem(b, "bucket", 2)])
        assert [d.reason for d in decisions] == [Reason.WITHIN_LIMIT, Reason.OVER_LIMIT]
        assert (await client.decide(a, cost=8)).reason is Reason.OVER_LIMIT


async def test_an_all_or_nothing_batch_travels_alone(address: str) -> None:
    calls = Calls()
    async with LimiterClient(settings(address), metrics=calls) as client:
        group = [BatchItem(key()), BatchItem(key())]
        singles = asyncio.gather(*(client.decide(key()) for _ in range(6)))
        grouped = await client.decide_batch(group, all_or_nothing=True)
        await singles
    assert all(d.allowed for d in grouped)
    assert ("ShouldAllowBatch", 2) in calls.calls
    # The six others were coalesced among themselves only: 6 decisions in other calls.
    others = list(calls.calls)
    others.remove(("ShouldAllowBatch", 2))
    assert sum(size for _, size in others) == 6


async def test_a_cached_denial_answers_the_whole_batch_without_a_call(address: str) -> None:
    calls = Calls()
    async with LimiterClient(settings(address, deny_cache_size=100), metrics=calls) as client:
        a, b = key(), key()
        await client.decide(b, cost=10)
        assert (await client.decide(b)).reason is Reason.OVER_LIMIT
        before = len(calls.calls)
        decisions = await client.decide_batch([BatchItem(a), BatchItem(b)], all_or_nothing=True)
        assert len(calls.calls) == before
        assert [(d.allowed, d.reason) for d in decisions] == [
            (False, Reason.NOT_ALL_ALLOWED),
            (False, Reason.OVER_LIMIT),
        ]
        assert decisions[0].retry_after_s == decisions[1].retry_after_s >= 1
        assert (await client.decide(a, cost=10)).allowed


def test_the_sync_client_batches_all_or_nothing(address: str) -> None:
    with SyncLimiterClient(settings(address, deny_cache_size=100)) as client:
        a, b = key(), key()
        client.decide(b, "bucket", 5)
        denied = client.decide_batch(
            [BatchItem(a, cost=4), BatchItem(b, "bucket", 1)], all_or_nothing=True
        )
        assert [d.reason for d in denied] == [Reason.NOT_ALL_ALLOWED, Reason.OVER_LIMIT]
        independent = client.decide_batch([BatchItem(a, cost=4), BatchItem(b, "bucket", 1)])
        # b's denial is cached now: answered without asking; a is counted.
        assert [d.reason for d in independent] == [Reason.WITHIN_LIMIT, Reason.OVER_LIMIT]
        assert client.decide(a, cost=7).reason is Reason.OVER_LIMIT
        assert client.decide_batch([]) == []
