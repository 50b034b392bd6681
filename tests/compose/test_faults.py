"""Containers killed under load (``podman kill``, SIGKILL) while wrk drives Nginx's
published port: nothing fails at the edge.

The load is one client at the proof of concept's limit, so nearly every answer is a 429:
each still runs the whole path (Nginx, API, limiter, Redis), and a 429 carries the
limiter's ``RateLimit`` header. An answer without that header is one the failure mode gave
instead of the limiter. A probe beside the load sends one request at a time and records
when answers became counted again. Killed containers stay down (the engine records them
as stopped by the user, which ``restart: unless-stopped`` respects).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from devstack import ProcessGroup, wait_until
from tests.compose.deployment import Deployment
from tests.compose.engine import EngineError
from tests.compose.redis_view import DATA_NODES
from tests.e2e.edge import client
from tests.e2e.load import LoadResult, Probe, Wrk, find_wrk

pytestmark = pytest.mark.skipif(find_wrk() is None, reason="wrk is not installed")

# Recovery is measured from the kill; down-after is when the Sentinels may begin to act.
RECOVERY_SLACK_S = 3.0
SETTLE_TIMEOUT_S = 60.0
# A Sentinel answering mid-change (a reply without a field, a command failing).
_NOT_YET = (EngineError, KeyError, ValueError, IndexError)
_CUT_MID_RESPONSE = "upstream prematurely closed connection while reading upstream"


@pytest.fixture
def load_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    with ProcessGroup(tmp_path_factory.mktemp("compose-load")) as group:
        yield group


def _limited(deployment: Deployment) -> str:
    return f"{deployment.url}/limited_endpoint"


def _run_for(wrk: Wrk, seconds: float) -> None:
    """Let the load run until ``seconds`` after it started (wrk reports only at the end)."""
    wait_until(
        lambda: True if time.monotonic() - wrk.started >= seconds else None,
        timeout=seconds + 1.0,
        waiting_for=f"{seconds} s of load",
        watch=(wrk.process,),
    )


def _assert_nothing_failed(result: LoadResult) -> None:
    assert result.requests > 0, result.summary()
    assert set(result.statuses) <= {200, 429}, result.summary()
    assert result.socket_errors == 0, result.summary()


def test_redis_master_killed_under_load(deployment: Deployment, load_group: ProcessGroup) -> None:
    """No 5xx, and decisions are the limiter's again within down-after + 3 s."""
    redis = deployment.redis
    old = wait_until(
        redis.settled,
        timeout=SETTLE_TIMEOUT_S,
        waiting_for="3 Sentinels agreeing on the master, each knowing 2 replicas and 2 "
        "other Sentinels, none in TILT",
        retry_on=_NOT_YET,
        interval=0.5,
    )
    bound_s = deployment.settings.down_after_ms / 1000 + RECOVERY_SLACK_S
    load_s = 1.0 + bound_s + 2.0
    wrk = Wrk(load_group, _limited(deployment), connections=20, duration_s=math.ceil(load_s))
    with Probe(_limited(deployment), "127.0.0.1") as probe:
        _run_for(wrk, 1.0)
        killed_at = time.monotonic()
        deployment.project.kill(old)
        _run_for(wrk, load_s - 0.5)
    result = wrk.result()

    def promoted() -> str | None:
        new = redis.agreed_master()
        return new if new not in (None, old) and redis.role(new) == "master" else None

    new = wait_until(
        promoted,
        timeout=30.0,
        waiting_for="the Sentinels to agree on a promoted replica",
        retry_on=_NOT_YET,
        interval=0.5,
    )
    after = probe.answered_after(killed_at)
    not_counted = [answer.at - killed_at for answer in after if not answer.counted]
    recovered_s = max(not_counted, default=0.0)
    print(f"\nkilled {old}; the Sentinels promoted {new}")
    print(f"load: {result.summary()}")
    print(f"probe: {len(not_counted)} fail-open answers; authoritative again {recovered_s:.2f} s")

    assert new in DATA_NODES
    _assert_nothing_failed(result)
    assert after, "the probe got no answer after the kill"
    assert {answer.status for answer in after} <= {200, 429}, [a.status for a in after]
    assert recovered_s <= bound_s
    assert after[-1].counted


def test_api_and_limiter_killed_under_load(
    deployment: Deployment, load_group: ProcessGroup
) -> None:
    """Nginx retries what api-1 cannot answer on api-2; the APIs take limiter-2 alone.

    The one failure no proxy can retry is a response whose headers api-1 had sent when it
    died: Nginx can only cut the connection (wrk counts a read error, Nginx logs
    "upstream prematurely closed connection"). Each read error must be one of those.
    """
    project = deployment.project
    nginx_log_start = len(project.logs("nginx"))
    wrk = Wrk(load_group, _limited(deployment), connections=50, duration_s=5)
    _run_for(wrk, 1.5)
    project.kill("api-1")
    project.kill("limiter-1")
    result = wrk.result()
    cut = project.logs("nginx")[nginx_log_start:].count(_CUT_MID_RESPONSE)
    print(f"\nkilled api-1 and limiter-1 under load: {result.summary()}; cut mid-response {cut}")

    assert result.requests > 0
    assert set(result.statuses) <= {200, 429}, result.summary()
    assert result.connect_errors == result.write_errors == result.timeouts == 0
    assert result.read_errors <= cut, result.summary()
    # limiter-2 took every call: nothing was answered by the failure mode.
    assert result.uncounted == 0, result.summary()
    with client() as http:
        served = {http.get(f"{deployment.url}/").headers["X-Served-By"] for _ in range(6)}
    assert served == {"api-2"}

    for service in ("limiter-1", "api-1"):
        project.start(service)
    project.wait_healthy(("limiter-1", "api-1"), timeout=60.0)
