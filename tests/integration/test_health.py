"""Health says whether decisions succeed, not whether Redis answers PING."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from devstack import ProcessGroup, free_port, start_redis, wait_until
from devstack.limiter import LimiterNode, start_limiter
from ratelimit_client import proto
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_health(node: LimiterNode, status: int, what: str) -> None:
    wait_until(
        lambda: True if node.health(proto.SERVICE_NAME) == status else None,
        timeout=10.0,
        waiting_for=what,
        watch=(node.process,),
    )


async def test_writes_refused_while_ping_works_is_not_serving(
    processes: ProcessGroup, tmp_path: Path
) -> None:
    # Its own Redis: the test makes it refuse writes.
    redis_server = start_redis(processes, workdir=tmp_path)
    env = {"REDIS_URL": redis_server.url, "LIMITER_HEALTH_INTERVAL_MS": "100"}
    node = start_limiter(processes, "limiter", free_port(), env)
    assert node.health(proto.SERVICE_NAME) == SERVING
    with redis_server.client() as admin:
        # A master with fewer replicas than this refuses every write (NOREPLICAS), while
        # PING, INFO and reads still work.
        admin.config_set("min-replicas-to-write", 1)
        try:
            assert admin.ping()
            wait_health(node, NOT_SERVING, "NOT_SERVING while writes are refused")
            client = LimiterClient(node.address)
            try:
                reply = await client.should_allow(f"k:{uuid.uuid4()}", timeout=2.0)
            finally:
                await client.close()
            assert reply.reason == proto.Reason.REASON_FAIL_OPEN
            # Liveness does not follow Redis: restarting the limiter would not help.
            assert node.health("liveness") == SERVING
            assert "health: NOT_SERVING, a probe decision failed" in node.process.log_tail(200)
        finally:
            admin.config_set("min-replicas-to-write", 0)
    wait_health(node, SERVING, "SERVING once writes succeed again")


async def test_the_probe_key_has_a_ttl(processes: ProcessGroup, tmp_path: Path) -> None:
    redis_server = start_redis(processes, workdir=tmp_path)
    env = {"REDIS_URL": redis_server.url, "LIMITER_HEALTH_INTERVAL_MS": "100"}
    start_limiter(processes, "limiter", free_port(), env)
    with redis_server.client() as admin:
        keys = wait_until(
            lambda: admin.keys("rl:{__health__}*") or None,
            timeout=5.0,
            waiting_for="the health probe's write",
        )
        assert all(0 < admin.pttl(key) <= 2000 for key in keys)
