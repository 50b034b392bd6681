"""Real limiter and API processes on loopback for the ``api`` integration tests.

Built on ``devstack``: each process runs in its own session, logs to a file, is stopped by
its PID, and readiness is polled (gRPC health answers, ``GET /health`` answers), never
slept on.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import ManagedProcess, ProcessGroup, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
# The shared limiter's default policy. The window is long enough never to roll over during
# a test (fixed windows are aligned to the clock, so a short one could reset mid-test).
LIMIT = 10
WINDOW_S = 3600
# Its other policies, with the RateLimit-Policy item each must advertise: the API learns
# quota and window from the limiter alone (1500ms rounds up to w=2).
SHARED_POLICIES = f"""\
policies:
  default:
    limit: {LIMIT}
    window: 1h
  login:
    limit: 5
    window: 90s
    algorithm: sliding_window
  burst:
    limit: 3
    window: 1500ms
    algorithm: token_bucket
"""
POLICY_ITEMS = {
    "default": f'"default";q={LIMIT};w={WINDOW_S}',
    "login": '"login";q=5;w=90',
    "burst": '"burst";q=3;w=2',
}
RELAXED_TIMEOUT_MS = 2000
# Stated rather than inherited, so a developer's environment cannot change what is tested.
LIMITER_BASE_ENV = {"LIMITER_BACKEND": "memory", "LIMITER_FAILURE_MODE": "open"}
API_BASE_ENV = {
    "LIMITER_TIMEOUT_MS": "50",
    "LIMITER_FAILURE_MODE": "open",
    "TRUSTED_PROXIES": "127.0.0.0/8,::1",
    "API_ACCESS_LOG": "false",
}


@dataclass(frozen=True)
class Limiter:
    """A running ``limiter_service`` and its gRPC address."""

    process: ManagedProcess
    port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Api:
    """A running API process and its base URL."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        """Everything the process logged so far."""
        return self.process.log_path.read_text(errors="replace")


def start_limiter(group: ProcessGroup, name: str, env: Mapping[str, str]) -> Limiter:
    """Start ``python -m limiter_service`` on a free port (does not wait; see
    ``wait_limiter``). ``env`` is laid over ours, e.g. ``RATE_LIMIT``."""
    port = free_port(HOST)
    process = group.start(
        name,
        [sys.executable, "-m", "limiter_service"],
        env={**LIMITER_BASE_ENV, "LIMITER_LISTEN": f"{HOST}:{port}", **env},
        cwd=REPO,
    )
    return Limiter(process, port)


def wait_limiter(limiter: Limiter) -> None:
    """Return once the limiter answers gRPC health checks (SERVING or NOT_SERVING: a
    limiter whose backend is down is up, and answers with its failure mode)."""
    with grpc.insecure_channel(limiter.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def answers() -> bool:
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            return True

        wait_until(
            answers,
            timeout=START_TIMEOUT_S,
            waiting_for=f"limiter {limiter.process.name} to answer health checks",
            retry_on=(grpc.RpcError,),
            watch=(limiter.process,),
        )


def start_api(
    group: ProcessGroup,
    name: str,
    env: Mapping[str, str],
    *,
    app: str = "api.main:app",
    via_run: bool = False,
) -> Api:
    """Start an API under uvicorn on a free port (does not wait; see ``wait_api``).

    ``via_run`` starts the demo through its console-script entry (``python -m api``);
    otherwise ``python -m uvicorn <app> --no-proxy-headers``, as documented.
    """
    port = free_port(HOST)
    argv: Sequence[str]
    if via_run:
        argv = [sys.executable, "-m", "api"]
    else:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-proxy-headers",
            "--no-access-log",
        ]
    process = group.start(
        name,
        argv,
        env={
            **API_BASE_ENV,
            "API_INSTANCE": name,
            "API_HOST": HOST,
            "API_PORT": str(port),
            **env,
        },
        cwd=REPO,
    )
    return Api(process, port)


def wait_api(api: Api) -> None:
    """Return once ``GET /health`` answers 200."""

    def healthy() -> bool | None:
        return True if httpx.get(f"{api.url}/health", timeout=1.0).status_code == 200 else None

    wait_until(
        healthy,
        timeout=START_TIMEOUT_S,
        waiting_for=f"API {api.process.name} to answer GET /health",
        retry_on=(httpx.TransportError,),
        watch=(api.process,),
    )


def client(local_address: str = HOST) -> httpx.Client:
    """An HTTP client whose connections come from ``local_address`` (any 127.0.0.0/8
    address works on Linux loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local_address), timeout=5.0)


@dataclass(frozen=True)
class SharedStack:
    """One limiter (``SHARED_POLICIES``: ``default`` is ``LIMIT`` per ``WINDOW_S``) and the
    APIs using it."""

    limiter: Limiter
    demo: Api  # the demo via api.main:run(), default TRUSTED_PROXIES (loopback)
    strict: Api  # the demo via uvicorn, TRUSTED_PROXIES=127.0.0.1 only
    example: Api  # tests/api/ratelimit_example_app.py


def start_shared_stack(group: ProcessGroup) -> SharedStack:
    """Start the shared stack, all processes at once, and wait until each answers (the
    policies file is written to the group's log directory)."""
    policies = group.log_dir / "policies.yaml"
    policies.write_text(SHARED_POLICIES)
    # These tests count decisions, so a busy machine must not turn one into a fail-open:
    # deadlines are generous here and tested on their own elsewhere.
    limiter = start_limiter(
        group,
        "limiter",
        {
            "LIMITER_POLICIES": str(policies),
            "LIMITER_DECISION_TIMEOUT_MS": str(RELAXED_TIMEOUT_MS),
        },
    )
    env = {
        "LIMITER_ADDR": limiter.address,
        "LIMITER_TIMEOUT_MS": str(RELAXED_TIMEOUT_MS),
        # Left over from deployments whose API advertised windows of its own: ignored now,
        # so they must not show in any header.
        "TIME_WINDOW": "60",
        "LIMITER_POLICY_WINDOWS": "default=60,login=60,burst=60",
    }
    demo = start_api(group, "api-1", env, via_run=True)
    strict = start_api(group, "api-strict", {**env, "TRUSTED_PROXIES": "127.0.0.1"})
    example = start_api(
        group,
        "api-example",
        env,
        app="tests.api.ratelimit_example_app:app",
    )
    wait_limiter(limiter)
    for api in (demo, strict, example):
        wait_api(api)
    return SharedStack(limiter, demo, strict, example)
