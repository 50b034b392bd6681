"""``LIMITER_WORKERS``: its default, its refusal with the memory backend, and the parent's
check that nobody else holds the port (``SO_REUSEPORT`` would otherwise let a second
limiter of the same user share it silently)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from limiter_service.errors import ConfigError
from limiter_service.settings import load_settings
from limiter_service.workers import WORKER_ENV, WorkerRole, check_listen, worker_role

ENV_NAMES = ("LIMITER_BACKEND", "REDIS_URL", "SENTINEL_HOSTS", "LIMITER_WORKERS", WORKER_ENV)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_redis_runs_one_worker_per_available_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert load_settings().resolved_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("LIMITER_WORKERS", "3")
    assert load_settings().resolved_workers() == 3
    monkeypatch.setenv("LIMITER_WORKERS", "")
    assert load_settings().resolved_workers() == len(os.sched_getaffinity(0))


def test_memory_runs_one_worker_and_refuses_more_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().resolved_workers() == 1
    monkeypatch.setenv("LIMITER_WORKERS", "1")
    assert load_settings().resolved_workers() == 1
    monkeypatch.setenv("LIMITER_WORKERS", "2")
    with pytest.raises(ConfigError, match="LIMITER_WORKERS=2: the memory backend keeps"):
        load_settings()


@pytest.mark.parametrize("value", ["0", "-1", "many", "257"])
def test_bad_worker_counts_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("LIMITER_WORKERS", value)
    with pytest.raises(ConfigError, match="LIMITER_WORKERS"):
        load_settings()


def test_the_worker_marker_is_read_only_when_well_formed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert worker_role() is None
    monkeypatch.setenv(WORKER_ENV, "1:4242")
    assert worker_role() == WorkerRole(1, 4242)
    monkeypatch.setenv(WORKER_ENV, "yes")
    assert worker_role() is None


@pytest.fixture
def held_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port another program listens on, with or without ``SO_REUSEPORT``."""
    with socket.socket() as other:
        if request.param:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        yield int(other.getsockname()[1])


@pytest.mark.parametrize("held_port", [False, True], ids=["plain", "so_reuseport"], indirect=True)
def test_a_port_another_program_holds_is_refused(held_port: int) -> None:
    with pytest.raises(
        ConfigError, match=f"LIMITER_LISTEN: cannot listen on 127.0.0.1:{held_port}"
    ):
        check_listen(f"127.0.0.1:{held_port}")


def test_a_free_port_passes_and_stays_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    check_listen(f"127.0.0.1:{port}")
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:0", "port 0 would give each worker a port of its own"),
        ("unix:/tmp/limiter.sock", "with several workers"),
        ("no port", "with several workers"),
        ("no.such.host.invalid:5000", "cannot listen on no.such.host.invalid:5000"),
    ],
)
def test_addresses_workers_cannot_share_are_refused(listen: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_listen(listen)


SIGTERM_DURING_START = """
import os, signal, sys
from limiter_service import workers
from limiter_service.settings import load_settings

serve = workers.SupervisorMetrics.serve


def serve_then_sigterm(self, settings):
    serve(self, settings)
    os.kill(os.getpid(), signal.SIGTERM)  # before run() has its handlers


workers.SupervisorMetrics.serve = serve_then_sigterm
sys.exit(workers.supervise(load_settings(), 2))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_sigterm_before_the_handlers_still_removes_the_metrics_dir(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:1/0",  # never connected to: no worker starts
        "LIMITER_LISTEN": f"127.0.0.1:{free_port()}",
        "LIMITER_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    env.pop(WORKER_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_START],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert list(tmp_path.iterdir()) == []
