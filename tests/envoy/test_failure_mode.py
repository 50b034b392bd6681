"""Envoy's ``failure_mode_deny`` with our limiter stopped: true answers 500, false lets every
request through, and the filter's own counters say which path each request took (while the
limiter ran, it decided: ``ok``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import ProcessGroup, free_port, start_limiter
from devstack.envoy_config import RATE_LIMIT_CLUSTER
from tests.envoy.harness import DOMAIN, LIMITS_FILE, filter_stats, start_edge, start_upstream

pytestmark = pytest.mark.integration

REQUESTS = 10


@pytest.mark.parametrize(
    ("deny", "status"),
    [(False, 200), (True, 500)],
    ids=["failure_mode_deny=false", "failure_mode_deny=true"],
)
def test_limiter_stopped(processes: ProcessGroup, tmp_path: Path, deny: bool, status: int) -> None:
    upstream = start_upstream(processes)
    env = {"LIMITER_BACKEND": "memory", "LIMITER_ENVOY_CONFIG": str(LIMITS_FILE)}
    limiter = start_limiter(processes, "limiter", free_port(), env)
    envoy = start_edge(
        processes,
        tmp_path,
        limiters=[limiter.address],
        upstreams=[upstream.address],
        domain=DOMAIN,
        failure_mode_deny=deny,
    )
    envoy.wait_healthy(RATE_LIMIT_CLUSTER, 1)
    assert envoy.get("/limited")[0] == 200
    assert filter_stats(envoy)["ok"] == 1

    limiter.process.terminate()
    before = filter_stats(envoy)
    statuses = [envoy.get("/limited")[0] for _ in range(REQUESTS)]
    after = filter_stats(envoy)

    assert statuses == [status] * REQUESTS
    moved = {name: after[name] - before[name] for name in after}
    assert moved == {
        "ok": 0,
        "over_limit": 0,
        "error": REQUESTS,
        "failure_mode_allowed": 0 if deny else REQUESTS,
    }
