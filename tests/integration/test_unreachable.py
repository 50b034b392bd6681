"""Redis unreachable: every RPC is answered within its deadline by the configured mode."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2

from devstack import ProcessGroup, free_port
from devstack.limiter import start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration
# The decision timeout is set far beyond the caller's deadline, so answering in time proves
# the service budgets from the caller's deadline (75 % of it) rather than its own setting.
DEADLINE_S = 1.0


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose kernel accepts connections that nobody ever reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def backends(black_hole: int) -> dict[str, dict[str, str]]:
    return {
        "refused": {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
        "hanging": {"REDIS_URL": f"redis://127.0.0.1:{black_hole}/0"},
        "no-sentinel": {"SENTINEL_HOSTS": f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"},
    }


@pytest.mark.parametrize("trouble", ["refused", "hanging", "no-sentinel"])
@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_answers_with_the_failure_mode_within_the_deadline(
    processes: ProcessGroup, black_hole: int, trouble: str, mode: str
) -> None:
    env = {
        **backends(black_hole)[trouble],
        "LIMITER_FAILURE_MODE": mode,
        "LIMITER_DECISION_TIMEOUT_MS": "60000",
    }
    node = start_limiter(processes, "limiter", free_port(), env, wait_serving=False)
    assert node.health() == health_pb2.HealthCheckResponse.NOT_SERVING
    expected = (
        (True, proto.Reason.REASON_FAIL_OPEN)
        if mode == "open"
        else (False, proto.Reason.REASON_FAIL_CLOSED)
    )
    client = LimiterClient(node.address)
    try:
        await client.channel.channel_ready()

        async def timed(key: str) -> tuple[float, proto.ShouldAllowResponse]:
            started = time.monotonic()
            reply = await client.should_allow(key, timeout=DEADLINE_S)
            return time.monotonic() - started, reply

        sequential = [await timed(f"seq:{i}") for i in range(10)]
        concurrent = await asyncio.gather(*(timed(f"par:{i}") for i in range(100)))
    finally:
        await client.close()
    for took, reply in [*sequential, *concurrent]:
        assert (reply.allowed, reply.reason) == expected
        assert took < DEADLINE_S
    if mode == "closed":
        assert all(r.retry_after.seconds == 1 for _, r in sequential)
    assert "backend unavailable, answering fail-" + mode in node.process.log_tail(200)
