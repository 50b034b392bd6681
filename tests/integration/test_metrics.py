"""The limiter's Prometheus endpoint, scraped over HTTP from real limiter processes: each
known sequence of decisions moves every counter by exactly what it should, shadow,
unlimited and failure-mode answers included; reloads and the policies in force show; and
``LIMITER_METRICS_LISTEN=`` empty serves nothing."""

from __future__ import annotations

import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from devstack import ProcessGroup, Samples, free_port, start_redis, wait_until
from devstack.limiter import LimiterNode, start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration
POLICIES = """
policies:
  login: {limit: 5, window: 1h}
  shadowed: {limit: 2, window: 1h, shadow: true}
  free: {unlimited: true}
  default: {limit: 100, window: 1h}
"""
OUTCOMES = ("allowed", "denied", "shadow_denied", "fail_open", "fail_closed", "unlimited")


def key() -> str:
    return f"k:{uuid.uuid4()}"


def outcomes(samples: Samples, policy: str) -> dict[str, float]:
    return {
        outcome: samples.get("ratelimit_decisions_total", policy=policy, outcome=outcome) or 0.0
        for outcome in OUTCOMES
    }


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


@pytest.fixture
def policies_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    return path


@pytest.fixture
def limiter(processes: ProcessGroup, policies_file: Path) -> LimiterNode:
    env = {
        "LIMITER_BACKEND": "memory",
        "LIMITER_POLICIES": str(policies_file),
        "LIMITER_POLICIES_WATCH_MS": "0",  # only SIGHUP reloads: the test decides when
        "LIMITER_METRICS_NEAR_LIMIT_RATIO": "0.5",
    }
    return start_limiter(processes, "limiter", free_port(), env)


async def test_a_known_sequence_moves_every_counter_exactly(limiter: LimiterNode) -> None:
    before = limiter.metrics()
    client = LimiterClient(limiter.address)
    try:
        login = key()
        for _ in range(7):  # limit 5: 5 allowed (remaining 4..0), 2 denied
            await client.should_allow(login, "login")
        shadowed = key()  # limit 2 in shadow mode: 2 allowed, 2 would-be denials
        await client.batch([proto.ShouldAllowRequest(key=shadowed, policy="shadowed")] * 4)
        for _ in range(3):
            await client.should_allow(key(), "free")
        with pytest.raises(grpc.aio.AioRpcError):
            await client.should_allow("", "login")
        with pytest.raises(grpc.aio.AioRpcError):
            await client.should_allow(key(), "no-such-policy")
    finally:
        await client.close()
    after = limiter.metrics()

    assert {
        policy: {
            outcome: after.total("ratelimit_decisions_total", policy=policy, outcome=outcome)
            - before.total("ratelimit_decisions_total", policy=policy, outcome=outcome)
            for outcome in OUTCOMES
        }
        for policy in ("login", "shadowed", "free")
    } == {
        "login": {**dict.fromkeys(OUTCOMES, 0.0), "allowed": 5.0, "denied": 2.0},
        "shadowed": {**dict.fromkeys(OUTCOMES, 0.0), "allowed": 2.0, "shadow_denied": 2.0},
        "free": {**dict.fromkeys(OUTCOMES, 0.0), "unlimited": 3.0},
    }
    # Ratio 0.5: login leaves 2, 1, 0 (< 2.5); shadowed leaves 0 (< 1); denials never count.
    assert delta(after, before, "ratelimit_near_limit_total", policy="login") == 3
    assert delta(after, before, "ratelimit_near_limit_total", policy="shadowed") == 1
    assert delta(after, before, "ratelimit_near_limit_total", policy="free") == 0

    rpcs = "ratelimit_rpc_duration_seconds_count"
    assert delta(after, before, rpcs, method="ShouldAllow", code="OK") == 10
    assert delta(after, before, rpcs, method="ShouldAllowBatch", code="OK") == 1
    assert delta(after, before, rpcs, method="ShouldAllow", code="INVALID_ARGUMENT") == 1
    assert delta(after, before, rpcs, method="ShouldAllow", code="NOT_FOUND") == 1
    # One round trip per call that reached the backend (calls were sent one at a time);
    # unlimited decisions never reach it, nor does login's second denial (the deny cache
    # answers it; shadow denials are never cached).
    assert delta(after, before, "ratelimit_deny_cache_answers_total", policy="login") == 1
    assert delta(after, before, "ratelimit_deny_cache_answers_total", policy="shadowed") == 0
    trips = "ratelimit_backend_decisions_per_round_trip"
    assert delta(after, before, f"{trips}_count") == 7
    assert delta(after, before, f"{trips}_sum") == 10
    assert delta(after, before, "ratelimit_backend_round_trip_seconds_count", result="ok") == 7
    assert delta(after, before, "ratelimit_failure_mode_answers_total") == 0
    assert after.get("ratelimit_backend_up") == 1
    # Label sets are bounded by policy: no key ever becomes a label.
    assert login not in after.text and shadowed not in after.text


def test_policy_info_and_reloads_follow_the_file(limiter: LimiterNode, policies_file: Path) -> None:
    info = "ratelimit_policy_info"
    samples = limiter.metrics()
    assert {labels["policy"]: labels for labels in samples.labels(info)} == {
        "login": _info("login", "5", "3600", "enforce"),
        "shadowed": _info("shadowed", "2", "3600", "shadow"),
        "free": _info("free", "0", "1", "unlimited"),
        "default": _info("default", "100", "3600", "enforce"),
    }
    assert samples.total("ratelimit_policy_reloads_total") == 0

    policies_file.write_text(
        POLICIES.replace(
            "login: {limit: 5, window: 1h}",
            "login: {limit: 7, window: 90s, algorithm: sliding_window}",
        )
    )
    limiter.process.signal(signal.SIGHUP)
    reloaded = _wait_for(
        limiter, lambda s: s.get("ratelimit_policy_reloads_total", result="success") == 1
    )
    assert _info("login", "7", "90", "enforce", "sliding_window") in reloaded.labels(info)

    policies_file.write_text("policies:\n  login: {limit: -1, window: 1h}\n")
    limiter.process.signal(signal.SIGHUP)
    refused = _wait_for(
        limiter, lambda s: s.get("ratelimit_policy_reloads_total", result="error") == 1
    )
    assert refused.get("ratelimit_policy_reloads_total", result="success") == 1
    assert len(refused.labels(info)) == 4  # the set in force is unchanged


def _info(
    policy: str, limit: str, window: str, mode: str, algorithm: str = "fixed_window"
) -> dict[str, str]:
    return {
        "policy": policy,
        "algorithm": algorithm,
        "limit": limit,
        "window_seconds": window,
        "mode": mode,
    }


def _wait_for(limiter: LimiterNode, condition: Callable[[Samples], bool]) -> Samples:
    def check() -> Samples | None:
        samples = limiter.metrics()
        return samples if condition(samples) else None

    return wait_until(
        check, timeout=30, waiting_for="the limiter's metrics to show it", watch=(limiter.process,)
    )


def _errors_reach(before: Samples, name: str, count: int) -> Callable[[Samples], bool]:
    return lambda samples: delta(samples, before, name, result="error") >= count


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose kernel accepts connections that nobody ever reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def test_failure_mode_answers_are_counted_by_cause(
    processes: ProcessGroup, tmp_path: Path, black_hole: int
) -> None:
    # Redis out of memory refuses every write: "refused", answered at once (fail open).
    full = start_redis(processes, "redis-full", workdir=tmp_path / "redis-full")
    with full.client() as admin:
        admin.config_set("maxmemory", 1)
    refusing = start_limiter(
        processes,
        "limiter-refused",
        free_port(),
        {"REDIS_URL": full.url, "LIMITER_FAILURE_MODE": "open"},
        wait_serving=False,
    )
    # A Redis that never answers: "timeout" (fail closed).
    hanging = start_limiter(
        processes,
        "limiter-hanging",
        free_port(),
        {"REDIS_URL": f"redis://127.0.0.1:{black_hole}/0", "LIMITER_FAILURE_MODE": "closed"},
        wait_serving=False,
    )
    for node, cause, outcome in (
        (refusing, "refused", "fail_open"),
        (hanging, "timeout", "fail_closed"),
    ):
        before = node.metrics()
        client = LimiterClient(node.address)
        try:
            for _ in range(3):
                await client.should_allow(key())
            await client.batch([proto.ShouldAllowRequest(key=key())] * 2)
        finally:
            await client.close()
        after = node.metrics()
        assert outcomes(after, "default")[outcome] - outcomes(before, "default")[outcome] == 5
        answers = "ratelimit_failure_mode_answers_total"
        assert delta(after, before, answers, cause=cause) == 5, node.process.name
        assert delta(after, before, answers) == 5
        errors = "ratelimit_backend_round_trip_seconds_count"
        # A timed-out round trip is recorded when its attempt gives up, which may be just
        # after the failure mode has answered the call.
        after = _wait_for(node, _errors_reach(before, errors, 4))
        assert delta(after, before, errors, result="error") == 4
        assert after.get("ratelimit_backend_up") == 0


def test_empty_listen_address_serves_no_metrics(processes: ProcessGroup) -> None:
    node = start_limiter(processes, "limiter", free_port(), {"LIMITER_METRICS_LISTEN": ""})
    assert node.metrics_address is None
    assert '"metrics": "off"' in node.process.log_tail()


def test_a_taken_metrics_port_stops_start_up_naming_the_variable(
    processes: ProcessGroup,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = processes.start(
            "limiter",
            [sys.executable, "-m", "limiter_service"],
            env={
                "LIMITER_LISTEN": f"127.0.0.1:{free_port()}",
                "LIMITER_METRICS_LISTEN": f"127.0.0.1:{port}",
            },
        )
        assert process.wait_exit(30) == 2
    assert "LIMITER_METRICS_LISTEN" in process.log_tail()
    assert "Traceback" not in process.log_tail()
