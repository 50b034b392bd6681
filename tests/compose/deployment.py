"""The project ``make compose-test`` runs: ``deploy/docker-compose.yml`` brought up with
podman from images already built, with the ``envoy`` profile (Envoy as a second edge over
the same APIs), every healthcheck passed, Nginx published on two loopback ports and Envoy
on a third; and taken down again (``down -v`` and the anonymous volumes), whatever
happened, with every container's output saved first."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack import free_ports, wait_until
from tests.compose.engine import ComposeProject, Podman
from tests.compose.redis_view import RedisView
from tests.e2e.compose import COMPOSE_FILE, load_compose

__all__ = ["PROFILES", "PROJECT", "SERVICES", "Deployment", "StackSettings", "deployed"]

PROJECT = "ratelimit-compose-test"
PROFILES = ("envoy",)
"""The profiles the tests bring up."""
SERVICES: tuple[str, ...] = tuple(
    name
    for name, service in load_compose()["services"].items()
    if set(service.get("profiles") or PROFILES) <= set(PROFILES)
)
"""The services ``up`` starts with ``PROFILES``."""
# Generous: a cold 2-core machine starts 11 containers, and a Sentinel that stalled on a
# name lookup may take tens of seconds.
HEALTHY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class StackSettings:
    """The compose file's settings as the tests set them (every one, so nothing comes from
    the caller's environment or ``deploy/.env``).

    The limit is the proof of concept's (10 per 60 s). The deadlines are raised from the
    defaults: a 2-core machine running eleven containers and a load generator must not
    turn decisions into fail-opens by latency alone (what the tests count is decisions).
    """

    rate_limit: int = 10
    time_window_s: int = 60
    down_after_ms: int = 5000
    limiter_timeout_ms: int = 2000
    decision_timeout_ms: int = 1500
    failure_mode: str = "open"

    def env(
        self,
        edge_ports: tuple[int, int],
        redis_password: str,
        prometheus_port: int,
        envoy_port: int,
    ) -> dict[str, str]:
        """The variables ``deploy/docker-compose.yml`` reads."""
        return {
            "REDIS_PASSWORD": redis_password,
            "RATE_LIMIT": str(self.rate_limit),
            "TIME_WINDOW": str(self.time_window_s),
            "LIMITER_FAILURE_MODE": self.failure_mode,
            "LIMITER_TIMEOUT_MS": str(self.limiter_timeout_ms),
            "LIMITER_DECISION_TIMEOUT_MS": str(self.decision_timeout_ms),
            "SENTINEL_DOWN_AFTER_MS": str(self.down_after_ms),
            # The tests reset Redis's counters behind the services' backs between bursts;
            # deny caches would go on answering those keys until their retry_after.
            "LIMITER_DENY_CACHE_SIZE": "0",
            "API_DENY_CACHE_SIZE": "0",
            "API_EDGE_DENY_MAX_S": "0",
            # "host-ip:port" is a valid published port: loopback only.
            "EDGE_PORT": f"127.0.0.1:{edge_ports[0]}",
            "EDGE_ALT_PORT": f"127.0.0.1:{edge_ports[1]}",
            "PROMETHEUS_PORT": f"127.0.0.1:{prometheus_port}",
            "ENVOY_PORT": f"127.0.0.1:{envoy_port}",
        }


@dataclass
class Deployment:
    """A running project. ``anonymous_volumes``: those its containers were created with;
    ``prometheus_port``: where Prometheus is published."""

    project: ComposeProject
    redis: RedisView
    settings: StackSettings
    edge_ports: tuple[int, int]
    anonymous_volumes: set[str]
    log_dir: Path
    prometheus_port: int = 0
    envoy_port: int = 0

    @property
    def url(self) -> str:
        """Nginx through the first published port (compose's 80)."""
        return f"http://127.0.0.1:{self.edge_ports[0]}"

    @property
    def envoy_url(self) -> str:
        """Envoy through its published port (compose's 8080)."""
        return f"http://127.0.0.1:{self.envoy_port}"

    @property
    def alt_url(self) -> str:
        """Nginx through the second published port (compose's 8000)."""
        return f"http://127.0.0.1:{self.edge_ports[1]}"

    def down(self) -> None:
        """Save each container's output into ``log_dir``, then ``down -v`` and remove the
        anonymous volumes; safe to repeat."""
        if not self.project.leftovers(self.anonymous_volumes):
            return
        for service in self.project.containers():
            (self.log_dir / f"{service}.log").write_text(self.project.logs(service))
        volumes = self.anonymous_volumes | self.project.anonymous_volumes()
        self.project.down(volumes)
        self.anonymous_volumes = volumes


def _wait_for_decisions(deployment: Deployment) -> None:
    """Healthchecks say each container is up, not that the path through them decides:
    wait until both API replicas answer with the limiter's ``RateLimit`` header."""
    seen: set[str] = set()

    def both_decide() -> bool | None:
        with httpx.Client(timeout=5.0) as http:
            response = http.get(f"{deployment.url}/limited_endpoint")
        if "RateLimit" in response.headers:
            seen.add(response.headers["X-Served-By"])
        return True if seen >= {"api-1", "api-2"} else None

    wait_until(
        both_decide,
        timeout=60.0,
        waiting_for="both API replicas to answer with the limiter's decision",
        retry_on=(httpx.TransportError,),
        interval=0.2,
    )


@contextmanager
def deployed(
    podman: Podman, podman_compose: str, log_dir: Path, settings: StackSettings
) -> Iterator[Deployment]:
    """Bring the project up, wait for every healthcheck, yield it; then take it down
    (``Deployment.down``)."""
    first, second, prometheus_port, envoy_port = free_ports(4)
    edge_ports = (first, second)
    password = secrets.token_hex(12)
    podman.env.update(settings.env(edge_ports, password, prometheus_port, envoy_port))
    project = ComposeProject(podman, podman_compose, COMPOSE_FILE, PROJECT, PROFILES)
    redis = RedisView(project, password)
    deployment = Deployment(
        project, redis, settings, edge_ports, set(), log_dir, prometheus_port, envoy_port
    )
    if project.containers():  # left by an interrupted run
        deployment.down()
    try:
        project.up()
        deployment.anonymous_volumes = project.anonymous_volumes()
        project.wait_healthy(SERVICES, timeout=HEALTHY_TIMEOUT_S)
        _wait_for_decisions(deployment)
        yield deployment
    finally:
        deployment.down()
