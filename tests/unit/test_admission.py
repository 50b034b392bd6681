"""Admission control without a network: limits per process and per peer, waiting for room,
shedding, fairness between peers, cancellation, and one log line per episode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from limiter_service.admission import Admission, AdmissionLimits
from limiter_service.backends.memory import MemoryBackend
from limiter_service.errors import InvalidRequest, Overloaded
from limiter_service.grpc_service import peer_address, status_for
from limiter_service.limiter import Limiter, Request
from limiter_service.policies import default_policies

LIMITS = AdmissionLimits(max_rpcs=4, max_peer_rpcs=3, max_decisions=10, max_peer_decisions=6)
WAIT_S = 5.0  # longer than any test: a call that waits is let in, or shed by expiry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def holding(admission: Admission, peer: str, decisions: int) -> AsyncIterator[None]:
    async with admission.admit(peer, decisions, WAIT_S):
        yield


class Call:
    """A call that asks for room at once, then holds it until stopped."""

    def __init__(self, admission: Admission, peer: str, decisions: int) -> None:
        self.entered = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(admission, peer, decisions))

    async def _run(self, admission: Admission, peer: str, decisions: int) -> None:
        async with admission.admit(peer, decisions, WAIT_S):
            self.entered.set()
            await asyncio.Event().wait()

    @property
    def admitted(self) -> bool:
        return self.entered.is_set()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def call(admission: Admission, peer: str, decisions: int) -> Call:
    """A ``Call`` that has been admitted, or is waiting for room."""
    started = Call(admission, peer, decisions)
    await asyncio.sleep(0)
    return started


async def test_calls_within_the_limits_are_counted_while_in_flight() -> None:
    admission = Admission(LIMITS)
    async with holding(admission, "a", 4), holding(admission, "b", 0):
        assert (admission.rpcs, admission.decisions) == (2, 5)  # an empty batch counts 1
        assert admission.in_flight("a") == (1, 4)
    assert (admission.rpcs, admission.decisions) == (0, 0)
    assert admission.in_flight("a") == (0, 0)
    assert admission.shed.rpcs == 0


async def test_calls_beyond_the_call_limits_are_shed_at_once() -> None:
    admission = Admission(LIMITS)
    async with AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(holding(admission, "a", 1))
        with pytest.raises(Overloaded) as per_peer:
            await stack.enter_async_context(holding(admission, "a", 1))
        await stack.enter_async_context(holding(admission, "b", 1))
        with pytest.raises(Overloaded) as overall:
            await stack.enter_async_context(holding(admission, "c", 1))
    assert (per_peer.value.limit, overall.value.limit) == ("peer_rpcs", "rpcs")
    assert "3 call(s) in flight from a" in str(per_peer.value)
    assert (admission.shed.rpcs, admission.shed.decisions) == (2, 2)
    assert admission.shed.by_limit == {"peer_rpcs": 1, "rpcs": 1}
    assert (admission.rpcs, admission.decisions) == (0, 0)


async def test_a_peer_over_its_decisions_waits_for_its_own_room_while_others_go_on() -> None:
    admission = Admission(LIMITS)
    first = await call(admission, "flood", 5)
    second = await call(admission, "flood", 5)  # 10 > 6 from one peer: waits
    other = await call(admission, "polite", 1)
    assert first.admitted and other.admitted
    assert not second.admitted
    assert admission.in_flight("flood") == (2, 5)
    await first.stop()
    await asyncio.wait_for(second.entered.wait(), 1)
    assert admission.in_flight("flood") == (1, 5)
    await second.stop()
    await other.stop()
    assert admission.shed.rpcs == 0
    assert (admission.rpcs, admission.decisions) == (0, 0)


async def test_room_is_handed_to_waiting_peers_in_turn() -> None:
    admission = Admission(LIMITS._replace(max_decisions=6))
    holder = await call(admission, "x", 6)
    queued = [await call(admission, peer, 3) for peer in ("a", "a", "b")]
    await holder.stop()  # 6 free: the first of a, then b (a's second waits its turn)
    await asyncio.wait_for(queued[2].entered.wait(), 1)
    assert [task.admitted for task in queued] == [True, False, True]
    for task in queued:
        await task.stop()


async def test_a_call_that_finds_no_room_in_time_is_shed() -> None:
    admission = Admission(LIMITS)
    async with holding(admission, "a", 6):
        with pytest.raises(Overloaded) as shed:
            async with admission.admit("a", 1, 0.01):
                pass
        with pytest.raises(Overloaded):  # no time to wait at all
            async with admission.admit("a", 1, 0):
                pass
    assert shed.value.limit == "peer_decisions"
    assert "no room within the wait allowed" in str(shed.value)
    assert (admission.shed.rpcs, admission.rpcs, admission.decisions) == (2, 0, 0)
    assert admission.in_flight("a") == (0, 0)


async def test_a_call_larger_than_the_limits_is_shed_without_waiting() -> None:
    admission = Admission(LIMITS)
    with pytest.raises(Overloaded) as shed:
        async with admission.admit("a", 7, WAIT_S):
            pass
    assert shed.value.limit == "peer_decisions"
    assert admission.rpcs == 0


async def test_a_caller_giving_up_while_waiting_leaves_nothing_behind() -> None:
    admission = Admission(LIMITS)
    holder = await call(admission, "a", 6)
    gone = await call(admission, "a", 6)
    await gone.stop()
    assert admission.in_flight("a") == (1, 6)
    await holder.stop()
    assert (admission.rpcs, admission.decisions, admission.shed.rpcs) == (0, 0, 0)
    async with holding(admission, "a", 6):  # and the queue does not hold a ghost
        pass


async def test_shedding_is_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    admission = Admission(LIMITS._replace(max_peer_rpcs=1), clock=clock)
    caplog.set_level(logging.INFO, logger="limiter_service.admission")
    async with holding(admission, "a", 1):
        for _ in range(50):
            with pytest.raises(Overloaded):
                async with holding(admission, "a", 1):
                    pass
        clock.now += 1.5
        with pytest.raises(Overloaded):
            async with holding(admission, "a", 1):
                pass
    clock.now += 1.5
    async with holding(admission, "a", 1):
        pass
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3, messages
    assert messages[0].startswith("overloaded, shedding calls (RESOURCE_EXHAUSTED)")
    assert messages[1].startswith("still shedding: 50 call(s) in the last 1.5s")
    assert messages[2] == "no longer shedding, after 51 call(s) (51 decision(s)) shed"


async def test_the_limiter_sheds_before_validating_and_before_the_backend() -> None:
    backend = MemoryBackend()
    admission = Admission(LIMITS._replace(max_peer_rpcs=1))
    limiter = Limiter(default_policies(10, 60), backend, admission=admission)
    async with holding(admission, "10.0.0.1", 1):
        with pytest.raises(Overloaded):
            await limiter.decide([Request(key="")], 1.0, peer="10.0.0.1")  # invalid, too
        decided = await limiter.decide([Request(key="k")], 1.0, peer="10.0.0.2")
    assert decided[0].allowed
    with pytest.raises(InvalidRequest):  # an oversized batch is refused, not shed
        await limiter.decide([Request(key="k")] * 1001, 1.0, peer="10.0.0.1")
    assert admission.shed.rpcs == 1


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:5123", "10.0.0.7"),
        ("ipv6:[::1]:5123", "::1"),
        ("ipv6:[2001:db8::1]:443", "2001:db8::1"),
        ("ipv6:[::ffff:10.0.0.7]:5123", "10.0.0.7"),
        ("unix:/run/limiter.sock", "unix:/run/limiter.sock"),
    ],
)
def test_calls_are_admitted_by_peer_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_a_shed_call_is_resource_exhausted_with_the_reason_overloaded() -> None:
    status = status_for(Overloaded("overloaded: 6 decision(s) in flight", "decisions"), False)
    assert status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status.details == "overloaded: 6 decision(s) in flight"
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "OVERLOADED",
        "ratelimit.v1",
        {"limit": "decisions"},
    )


async def test_calls_behind_one_that_gave_up_are_served() -> None:
    admission = Admission(LIMITS)
    holder = await call(admission, "a", 2)
    big = await call(admission, "a", 5)  # 2 + 5 > 6: waits
    small = await call(admission, "a", 1)  # would fit, but waits its turn behind big
    assert not small.admitted
    await big.stop()
    await asyncio.wait_for(small.entered.wait(), 1)
    await small.stop()
    await holder.stop()
    assert (admission.rpcs, admission.decisions) == (0, 0)
