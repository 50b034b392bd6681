"""The limiter and API processes of the ``api`` integration tests: what they are configured
with, and the shared stack most tests use.

Nothing here starts a process itself: limiters and APIs are started, waited on and stopped
through ``devstack`` (``start_limiter``/``wait_limiter``, ``start_api``/``wait_api``), so
each runs in its own session, logs to a file, is stopped by its PID, and readiness is
polled (gRPC health answers, ``GET /health`` answers), never slept on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from devstack import (
    ApiNode,
    LimiterNode,
    ProcessGroup,
    free_port,
    start_api,
    start_limiter,
    wait_api,
)

__all__ = [
    "API_BASE_ENV",
    "EXAMPLE_APP",
    "HOST",
    "LIMIT",
    "LIMITER_BASE_ENV",
    "POLICY_ITEMS",
    "RELAXED_TIMEOUT_MS",
    "SHARED_POLICIES",
    "START_TIMEOUT_S",
    "WINDOW_S",
    "SharedStack",
    "client",
    "launch_api",
    "launch_limiter",
    "start_shared_stack",
    "wait_apis",
]

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
EXAMPLE_APP = "tests.api.ratelimit_example_app:app"


def launch_limiter(
    group: ProcessGroup, name: str, env: Mapping[str, str], *, wait_serving: bool = True
) -> LimiterNode:
    """A limiter on a free loopback port with ``LIMITER_BASE_ENV`` under ``env``, once its
    health service answers (``SERVING`` unless ``wait_serving`` is false)."""
    return start_limiter(
        group,
        name,
        free_port(HOST),
        {**LIMITER_BASE_ENV, **env},
        host=HOST,
        wait_serving=wait_serving,
        timeout=START_TIMEOUT_S,
    )


def launch_api(
    group: ProcessGroup, name: str, env: Mapping[str, str], *, app: str | None = None
) -> ApiNode:
    """An API (the demo, or ``app`` under uvicorn) on a free loopback port with
    ``API_BASE_ENV`` under ``env``; does not wait (see ``wait_apis``)."""
    return start_api(group, name, free_port(HOST), {**API_BASE_ENV, **env}, host=HOST, app=app)


def wait_apis(*apis: ApiNode) -> None:
    """Return once every one of ``apis`` answers ``GET /health`` with 200."""
    for api in apis:
        wait_api(api, START_TIMEOUT_S)


def client(local_address: str = HOST) -> httpx.Client:
    """An HTTP client whose connections come from ``local_address`` (any 127.0.0.0/8
    address works on Linux loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local_address), timeout=5.0)


@dataclass(frozen=True)
class SharedStack:
    """One limiter (``SHARED_POLICIES``: ``default`` is ``LIMIT`` per ``WINDOW_S``) and the
    APIs using it."""

    limiter: LimiterNode
    demo: ApiNode  # the demo via its entry point, default TRUSTED_PROXIES (loopback)
    strict: ApiNode  # the demo under uvicorn, TRUSTED_PROXIES=127.0.0.1 only
    example: ApiNode  # tests/api/ratelimit_example_app.py under uvicorn


def start_shared_stack(group: ProcessGroup) -> SharedStack:
    """Start the shared stack and return once each process answers (the policies file is
    written to the group's log directory). The limiter comes first, so every API connects
    to it at start-up instead of waiting out a reconnect backoff; the APIs start side by
    side."""
    policies = group.log_dir / "policies.yaml"
    policies.write_text(SHARED_POLICIES)
    # These tests count decisions, so a busy machine must not turn one into a fail-open:
    # deadlines are generous here and tested on their own elsewhere.
    limiter = launch_limiter(
        group,
        "limiter",
        {
            "LIMITER_POLICIES": str(policies),
            "LIMITER_DECISION_TIMEOUT_MS": str(RELAXED_TIMEOUT_MS),
        },
    )
    env = {"LIMITER_ADDR": limiter.address, "LIMITER_TIMEOUT_MS": str(RELAXED_TIMEOUT_MS)}
    demo = launch_api(group, "api-1", env)
    strict = launch_api(
        group, "api-strict", {**env, "TRUSTED_PROXIES": "127.0.0.1"}, app="api.main:app"
    )
    example = launch_api(group, "api-example", env, app=EXAMPLE_APP)
    wait_apis(demo, strict, example)
    return SharedStack(limiter, demo, strict, example)
