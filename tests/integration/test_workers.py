"""``LIMITER_WORKERS=2`` on real Redis: every worker serves, the parent restarts, drains,
reloads, gives up on a crash loop, and serves one ``/metrics`` adding up every worker.

Which worker answered is read from the parent's own numbers: ``ratelimit_worker_rpcs``
counts each running worker's RPCs by pid. Fresh connections (a channel with its own
subchannel pool) are spread over the workers by the kernel.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from devstack import ProcessGroup, StandaloneRedis, free_port, wait_until
from devstack.limiter import SERVING, LimiterNode, start_limiter
from devstack.scrape import Samples
from limiter_service.workers import CRASH_LIMIT
from ratelimit_client import proto
from tests.certificates import CertificateAuthority, peer_certificate, requires_openssl, serial_of

pytestmark = pytest.mark.integration

CONNECTIONS = 24
TIMEOUT_S = 30.0


def workers_env(redis_server: StandaloneRedis, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "LIMITER_WORKERS": "2",
        "LIMITER_SHUTDOWN_GRACE_S": "2",
        **extra,
    }


def children(pid: int) -> set[int]:
    """The parent's worker PIDs, as the kernel lists them now."""
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_workers(node: LimiterNode, count: int = 2, without: Collection[int] = ()) -> set[int]:
    """Wait until the parent has ``count`` workers, none of them in ``without``, each
    listed in a scrape as running; return their PIDs."""

    def ready() -> set[int] | None:
        pids = children(node.process.pid)
        if len(pids) != count or pids & set(without):
            return None
        listed = {int(labels["pid"]) for labels in node.metrics().labels("ratelimit_worker_rpcs")}
        return pids if listed == pids else None

    return wait_until(
        ready,
        timeout=TIMEOUT_S,
        waiting_for=f"{count} workers of {node.process.name}",
        retry_on=(OSError,),
        watch=(node.process,),
    )


def rpcs_by_worker(samples: Samples) -> dict[int, float]:
    return {
        int(labels["pid"]): samples.get("ratelimit_worker_rpcs", **labels) or 0.0
        for labels in samples.labels("ratelimit_worker_rpcs")
    }


def fresh_channel(node: LimiterNode) -> grpc.Channel:
    """A channel that opens a connection of its own (no subchannel shared with others)."""
    return grpc.insecure_channel(node.address, options=[("grpc.use_local_subchannel_pool", 1)])


def answer_on_fresh_connections(node: LimiterNode, policy: str = "") -> int:
    """On each of ``CONNECTIONS`` new connections: health, reflection and one decision."""
    for i in range(CONNECTIONS):
        with fresh_channel(node) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=proto.SERVICE_NAME), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert proto.SERVICE_NAME in services
            request = proto.ShouldAllowRequest(key=f"conn:{os.getpid()}:{i}", policy=policy)
            reply = proto.RateLimiterStub(channel).ShouldAllow(request, timeout=5)
            assert reply.reason == proto.Reason.REASON_WITHIN_LIMIT, reply
    return CONNECTIONS


def wait_rpcs(node: LimiterNode, before: dict[int, float], expected: int) -> dict[int, float]:
    """Wait until the workers' RPC counts grew by ``expected`` since ``before``; the
    growth per worker."""

    def grown() -> dict[int, float] | None:
        now = rpcs_by_worker(node.metrics())
        growth = {pid: now[pid] - before.get(pid, 0.0) for pid in now}
        return growth if sum(growth.values()) == expected else None

    return wait_until(grown, timeout=TIMEOUT_S, waiting_for="RPC counts", retry_on=(OSError,))


@pytest.fixture
def node(processes: ProcessGroup, redis_server: StandaloneRedis) -> Iterator[LimiterNode]:
    yield start_limiter(processes, "limiter", free_port(), workers_env(redis_server))


def test_every_worker_answers_health_reflection_and_decisions(node: LimiterNode) -> None:
    pids = wait_workers(node)
    assert node.process.pid not in pids
    before = rpcs_by_worker(node.metrics())
    decided = node.metrics().total("ratelimit_decisions_total")
    growth = wait_rpcs(node, before, answer_on_fresh_connections(node))
    assert set(growth) == pids and all(count > 0 for count in growth.values()), growth
    samples = node.metrics()
    assert samples.total("ratelimit_decisions_total") == decided + CONNECTIONS
    assert samples.get("ratelimit_decisions_total", policy="default", outcome="allowed") == (
        decided + CONNECTIONS
    )
    assert samples.get("ratelimit_workers") == 2
    assert samples.total("ratelimit_rpc_duration_seconds_count", method="ShouldAllow") == (
        CONNECTIONS
    )
    assert samples.get("ratelimit_backend_up") == 1
    assert len(samples.labels("ratelimit_policy_info")) == 1


def test_a_killed_worker_is_started_again_and_service_goes_on(node: LimiterNode) -> None:
    pids = wait_workers(node)
    wait_rpcs(node, rpcs_by_worker(node.metrics()), answer_on_fresh_connections(node))
    decided = node.metrics().total("ratelimit_decisions_total")
    assert decided >= CONNECTIONS
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    new = wait_workers(node, without={victim})
    assert len(new & pids) == 1
    assert f"(pid {victim}) killed by SIGKILL; starting it again" in node.process.log_tail(200)
    before = rpcs_by_worker(node.metrics())
    assert victim not in before
    growth = wait_rpcs(node, before, answer_on_fresh_connections(node))
    assert set(growth) == new
    samples = node.metrics()
    assert samples.get("ratelimit_worker_restarts_total") == 1
    # What the killed worker had counted still counts.
    assert samples.total("ratelimit_decisions_total") == decided + CONNECTIONS


def test_sigterm_drains_every_worker_and_exits_0(node: LimiterNode) -> None:
    pids = wait_workers(node)
    node.process.signal(signal.SIGTERM)
    assert node.process.wait_exit(TIMEOUT_S) == 0
    assert not any(alive(pid) for pid in pids)
    log = node.process.log_tail(200)
    for pid in pids:
        assert f"pid {pid}] stopped" in log, log
    assert "stopped (exit 0)" in log


def test_workers_stop_when_the_parent_is_killed(node: LimiterNode) -> None:
    pids = wait_workers(node)
    node.process.kill()
    wait_until(
        lambda: True if not any(alive(pid) for pid in pids) else None,
        timeout=TIMEOUT_S,
        waiting_for="orphaned workers to stop",
    )


def test_sighup_reloads_the_policies_in_every_worker(
    processes: ProcessGroup, redis_server: StandaloneRedis, tmp_path: Path
) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  default: {limit: 1000, window: 1h}\n")
    env = workers_env(redis_server, LIMITER_POLICIES=str(policies), LIMITER_POLICIES_WATCH_MS="0")
    node = start_limiter(processes, "limiter", free_port(), env)
    pids = wait_workers(node)
    staged = tmp_path / "next.yaml"
    staged.write_text(
        "policies:\n  default: {limit: 1000, window: 1h}\n  login: {limit: 1000, window: 1m}\n"
    )
    os.replace(staged, policies)
    node.process.signal(signal.SIGHUP)
    wait_until(
        lambda: (
            True
            if node.metrics().get("ratelimit_policy_reloads_total", result="success") == 2
            else None
        ),
        timeout=TIMEOUT_S,
        waiting_for="both workers to reload",
        retry_on=(OSError,),
    )
    before = rpcs_by_worker(node.metrics())
    growth = wait_rpcs(node, before, answer_on_fresh_connections(node, policy="login"))
    assert set(growth) == pids and all(count > 0 for count in growth.values()), growth
    names = {labels["policy"] for labels in node.metrics().labels("ratelimit_policy_info")}
    assert names == {"default", "login"}
    assert children(node.process.pid) == pids


def test_workers_that_keep_dying_stop_the_parent_non_zero(node: LimiterNode) -> None:
    killed: set[int] = set()
    while node.process.is_running():
        pids = wait_until(
            lambda: (children(node.process.pid) - killed) or None,
            timeout=TIMEOUT_S,
            waiting_for="a worker to kill",
        )
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
        assert len(killed) <= CRASH_LIMIT + 1
        if len(killed) == CRASH_LIMIT + 1:
            break
    assert node.process.wait_exit(TIMEOUT_S) == 1
    assert "giving up" in node.process.log_tail(200)
    assert not any(alive(pid) for pid in killed | children(node.process.pid))


def run_service(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    tmp.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "limiter_service"],
        env={
            **os.environ,
            "LIMITER_LISTEN": f"127.0.0.1:{free_port()}",
            "LIMITER_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "LIMITER_WORKERS": "2",
            "TMPDIR": str(tmp),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_the_memory_backend_with_two_workers_says_why_and_exits_2(tmp_path: Path) -> None:
    result = run_service({}, tmp_path / "tmp")
    assert result.returncode == 2
    assert "LIMITER_WORKERS=2: the memory backend keeps its counters" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_port_another_program_holds_stops_start_up_before_any_worker(
    redis_server: StandaloneRedis, tmp_path: Path, reuse_port: bool
) -> None:
    with socket.socket() as other:
        if reuse_port:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        listen = f"127.0.0.1:{other.getsockname()[1]}"
        result = run_service(
            {"REDIS_URL": redis_server.url, "LIMITER_LISTEN": listen}, tmp_path / "tmp"
        )
    assert result.returncode == 2
    assert f"LIMITER_LISTEN: cannot listen on {listen}" in result.stderr
    assert "worker 0 started" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIMITER_POLICIES": "{policies}"}, "policy 'login': field 'limit'"),
        ({"LIMITER_TLS_CERT": "{garbage}", "LIMITER_TLS_KEY": "{garbage}"}, "LIMITER_TLS_CERT"),
    ],
    ids=["policies", "tls"],
)
def test_configuration_errors_stop_start_up_before_any_worker(
    redis_server: StandaloneRedis, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  login: {limit: -1, window: 1m}\n")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    paths = {"policies": str(policies), "garbage": str(garbage)}
    env = {name: value.format(**paths) for name, value in env.items()}
    tmp = tmp_path / "tmp"
    result = run_service({"REDIS_URL": redis_server.url, **env}, tmp)
    assert result.returncode == 2
    assert message in result.stderr
    assert "worker 0 started" not in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp.iterdir()) == []  # no metrics directory left behind


def test_the_metrics_directory_is_removed_at_exit(
    processes: ProcessGroup, redis_server: StandaloneRedis, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    node = start_limiter(
        processes, "limiter", free_port(), workers_env(redis_server, TMPDIR=str(tmp))
    )
    wait_workers(node)
    (made,) = tmp.iterdir()
    assert any(made.glob("*.db"))
    assert node.process.terminate() == 0
    assert list(tmp.iterdir()) == []


@requires_openssl
def test_sighup_reloads_the_certificate_in_every_worker(
    processes: ProcessGroup, redis_server: StandaloneRedis, tmp_path: Path
) -> None:
    ca = CertificateAuthority(tmp_path / "pki", "ca")
    cert, key = tmp_path / "limiter.pem", tmp_path / "limiter.key"
    first, renewed = ca.issue("limiter-1"), ca.issue("limiter-2")
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    env = workers_env(redis_server, LIMITER_TLS_CERT=str(cert), LIMITER_TLS_KEY=str(key))
    credentials = grpc.ssl_channel_credentials(ca.cert.read_bytes())
    node = start_limiter(
        processes, "limiter", free_port(), env, credentials=credentials, server_name="localhost"
    )
    pids = wait_workers(node)
    assert serial_of(peer_certificate(node.host, node.port, ca.cert)) == first.serial
    for source, target in ((renewed.cert, cert), (renewed.key, key)):
        staged = target.with_suffix(".new")
        staged.write_bytes(source.read_bytes())
        os.replace(staged, target)
    node.process.signal(signal.SIGHUP)
    wait_until(
        lambda: (
            True
            if all(
                f"pid {pid}] TLS certificates reloaded" in node.process.log_tail(200)
                for pid in pids
            )
            else None
        ),
        timeout=TIMEOUT_S,
        waiting_for="both workers to reload their certificate",
        watch=(node.process,),
    )
    # New connections land on either worker: every one gets the renewed certificate.
    serials = {serial_of(peer_certificate(node.host, node.port, ca.cert)) for _ in range(16)}
    assert serials == {renewed.serial}
    assert node.health() == SERVING


def test_a_taken_metrics_port_stops_start_up_before_any_worker(
    redis_server: StandaloneRedis, tmp_path: Path
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        metrics = f"127.0.0.1:{other.getsockname()[1]}"
        tmp = tmp_path / "tmp"
        result = run_service(
            {"REDIS_URL": redis_server.url, "LIMITER_METRICS_LISTEN": metrics}, tmp
        )
    assert result.returncode == 2
    assert f"LIMITER_METRICS_LISTEN: cannot listen on {metrics}" in result.stderr
    assert "worker 0 started" not in result.stderr
    assert list(tmp.iterdir()) == []
