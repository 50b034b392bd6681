"""The whole topology as local processes: the same services as ``deploy/docker-compose.yml``.

Redis master + 2 replicas + 3 Sentinels, 2 limiter replicas on the Sentinel backend, 2 API
replicas balancing over both limiters, Nginx (or Envoy, with ``edge="envoy"``, its ratelimit
filter asking the limiters too) in front of both APIs, and Prometheus scraping
the limiters and the APIs, all on loopback with their files under one working directory.
``make stack`` runs it (``devstack.__main__``) and the end-to-end tests drive it, so both
exercise the same launcher.
"""

from __future__ import annotations

import http.client
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from devstack.api import ApiNode, start_api, wait_api
from devstack.envoy import EnvoyNode, start_envoy
from devstack.envoy_config import UPSTREAM_CLUSTER
from devstack.errors import DevstackError, UnknownNodeError
from devstack.lifecycle import StopsOnExit
from devstack.limiter import LimiterNode, start_limiter
from devstack.nginx import NginxNode, start_nginx
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.prometheus import PrometheusNode, start_prometheus
from devstack.redis_topology import RedisTopology
from devstack.stack_config import (
    API_SERVICES,
    ENVOY_SERVICE,
    LIMITER_SERVICES,
    NGINX_SERVICE,
    PROMETHEUS_SERVICE,
    REDIS_SERVICES,
    SENTINEL_SERVICES,
    StackConfig,
    api_env,
    edge_settings,
    limiter_env,
    scrape_targets,
    services,
)
from devstack.waiting import wait_until

__all__ = ["Stack"]

T = TypeVar("T")


def _running(node: T | None, missing: str) -> T:
    """``node``, or ``DevstackError(missing)`` when it is not running."""
    if node is None:
        raise DevstackError(missing)
    return node


class Stack(StopsOnExit):
    """Start, inspect, break and stop the local stack.

    Nothing runs until ``start()`` (or entering the ``with`` block); ``stop()`` (or leaving
    it) stops every process started, restarted ones included, safe to repeat. ``workdir``
    receives the generated configurations and one log file per process. Ports left at 0 in
    ``config`` are chosen at start; ``config`` then reports the chosen ones.
    """

    def __init__(self, workdir: Path, config: StackConfig | None = None) -> None:
        self._workdir = workdir
        self._config = config if config is not None else StackConfig()
        self._topology: RedisTopology | None = None
        self._group = ProcessGroup(workdir / "logs")
        self._limiters: dict[str, LimiterNode] = {}
        self._apis: dict[str, ApiNode] = {}
        self._nginx: NginxNode | None = None
        self._envoy: EnvoyNode | None = None
        self._prometheus: PrometheusNode | None = None
        self._env: dict[str, Mapping[str, str]] = {}

    def __enter__(self) -> Stack:
        if self._topology is None:
            self.start()
        return self

    # -- accessors -------------------------------------------------------------------

    @property
    def config(self) -> StackConfig:
        """The configuration, with the ports actually used once started."""
        return self._config

    @property
    def workdir(self) -> Path:
        """Directory of the generated configurations and of the ``logs/`` directory."""
        return self._workdir

    @property
    def log_dir(self) -> Path:
        """One ``<service>.log`` per limiter, API and Nginx (Redis: under ``redis/``)."""
        return self._group.log_dir

    @property
    def topology(self) -> RedisTopology:
        """The Redis Sentinel deployment. Raises ``DevstackError`` before ``start()``."""
        return _running(self._topology, "the stack is not started")

    @property
    def nginx(self) -> NginxNode:
        """The running Nginx. Raises ``DevstackError`` before ``start()`` and when the
        edge is Envoy."""
        return _running(self._nginx, f"no Nginx running (edge: {self._config.edge})")

    @property
    def envoy(self) -> EnvoyNode:
        """The running Envoy. Raises ``DevstackError`` before ``start()`` and when the
        edge is Nginx."""
        return _running(self._envoy, f"no Envoy running (edge: {self._config.edge})")

    @property
    def nginx_url(self) -> str:
        """Base URL of the edge, Nginx or Envoy, e.g. ``http://127.0.0.1:8080``."""
        return self.edge_url

    @property
    def edge_url(self) -> str:
        """Base URL of the edge, Nginx or Envoy, e.g. ``http://127.0.0.1:8080``."""
        if self._config.edge == ENVOY_SERVICE:
            return self.envoy.url
        return self.nginx.url

    @property
    def prometheus(self) -> PrometheusNode:
        """The running Prometheus (scraping every limiter and API). Raises
        ``DevstackError`` before ``start()``."""
        return _running(self._prometheus, "the stack is not started")

    @property
    def apis(self) -> Mapping[str, ApiNode]:
        """The API replicas by service name (``api-1``, ``api-2``), latest process each."""
        return dict(self._apis)

    @property
    def limiters(self) -> Mapping[str, LimiterNode]:
        """The limiter replicas by service name (``limiter-1``, ``limiter-2``)."""
        return dict(self._limiters)

    def processes(self) -> dict[str, ManagedProcess]:
        """The current process of every service, by the service names compose uses."""
        topology = self.topology
        found: dict[str, ManagedProcess] = {}
        for name, node in zip(REDIS_SERVICES, topology.data_nodes, strict=True):
            found[name] = node.process
        for name, node in zip(SENTINEL_SERVICES, topology.sentinels, strict=True):
            found[name] = node.process
        for name, limiter in self._limiters.items():
            found[name] = limiter.process
        for name, api in self._apis.items():
            found[name] = api.process
        if self._config.edge == ENVOY_SERVICE:
            found[ENVOY_SERVICE] = self.envoy.process
        else:
            found[NGINX_SERVICE] = self.nginx.process
        found[PROMETHEUS_SERVICE] = self.prometheus.process
        return {name: found[name] for name in services(self._config.edge)}

    def service_env(self, name: str) -> Mapping[str, str]:
        """The environment given to service ``name`` (for Nginx: the template's variables).

        Redis nodes, Sentinels and Envoy are configured by files and get none: ``{}``.
        Raises ``UnknownNodeError`` for a name that is no service, ``DevstackError`` before
        start.
        """
        known = services(self._config.edge)
        if name not in known:
            raise UnknownNodeError(f"no service named {name!r}; services: {', '.join(known)}")
        if self._topology is None:
            raise DevstackError("the stack is not started")
        return dict(self._env.get(name, {}))

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start every service and return once each passes its health check (for
        Prometheus: once it has scraped every limiter and API).

        On any failure, everything started is stopped again and the error propagates
        (``DevstackError`` with the failing process's log tail, or ``OSError``). Raises
        ``DevstackError`` if already started.
        """
        if self._topology is not None:
            raise DevstackError("the stack is already started")
        self._config = self._config.with_ports_chosen()
        timeout = self._config.startup_timeout
        self._topology = RedisTopology(
            self._workdir / "redis",
            sentinel_password=secrets.token_hex(16),
            down_after_ms=self._config.down_after_ms,
            startup_timeout=timeout,
            ports=self._config.redis_ports,
        )
        try:
            self._topology.start()
            _in_parallel([partial(self._start_limiter, name) for name in LIMITER_SERVICES])
            for name in API_SERVICES:
                self._launch_api(name, {})
            _in_parallel([partial(wait_api, api, timeout) for api in self._apis.values()])
            if self._config.edge == ENVOY_SERVICE:
                self._start_envoy()
            else:
                self._start_nginx()
            self._start_prometheus()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (Nginx, APIs, limiters, then Redis); safe to repeat.

        Every process is attempted even if stopping one fails; the first failure is then
        re-raised.
        """
        try:
            self._group.stop()
        finally:
            if self._topology is not None:
                self._topology.stop()

    # -- breaking and repairing ------------------------------------------------------

    def kill_api(self, name: str) -> int:
        """SIGKILL API replica ``name``; returns its exit status."""
        return self._api(name).process.kill()

    def restart_api(self, name: str, env: Mapping[str, str] | None = None) -> ApiNode:
        """Start API replica ``name`` again on its port, stopping it first (SIGTERM, a
        graceful drain) if it still runs, with ``env`` laid over its environment (kept for
        later restarts). Returns once it answers ``GET /health`` and Nginx sends it
        requests again (see ``wait_in_rotation``)."""
        old = self._api(name)
        if old.process.is_running():
            old.process.terminate()
        node = wait_api(self._launch_api(name, env or {}), self._config.startup_timeout)
        self.wait_in_rotation(name)
        return node

    def wait_in_rotation(self, name: str, timeout: float = 15.0) -> None:
        """Return once a request through the edge is served by API replica ``name``.

        Nginx skips a replica that failed for its ``fail_timeout`` (2 s), Envoy until its
        health check passes again, restarted or not; this polls ``GET /`` (not
        rate-limited) until ``X-Served-By`` names it. Raises ``DeadlineExceededError``
        after ``timeout`` seconds.
        """
        api = self._api(name)
        edge: NginxNode | EnvoyNode = (
            self.envoy if self._config.edge == ENVOY_SERVICE else self.nginx
        )

        def served() -> bool | None:
            status, headers = edge.get("/")
            return True if status == 200 and headers.get("x-served-by") == name else None

        wait_until(
            served,
            timeout=timeout,
            waiting_for=f"{self._config.edge} to send requests to {name} again",
            retry_on=(OSError, http.client.HTTPException),
            watch=(api.process, edge.process),
        )

    def kill_limiter(self, name: str) -> int:
        """SIGKILL limiter replica ``name``; returns its exit status."""
        return self._limiter(name).process.kill()

    def restart_limiter(self, name: str) -> LimiterNode:
        """Start limiter replica ``name`` again on its port (stopping it first if it still
        runs) and return once it reports ``SERVING``."""
        old = self._limiter(name)
        if old.process.is_running():
            old.process.terminate()
        return self._start_limiter(name)

    # -- internals -------------------------------------------------------------------

    def _api(self, name: str) -> ApiNode:
        try:
            return self._apis[name]
        except KeyError:
            raise UnknownNodeError(f"no API replica named {name!r}") from None

    def _limiter(self, name: str) -> LimiterNode:
        try:
            return self._limiters[name]
        except KeyError:
            raise UnknownNodeError(f"no limiter replica named {name!r}") from None

    def _start_limiter(self, name: str) -> LimiterNode:
        topology = self.topology
        port = self._config.limiter_ports[LIMITER_SERVICES.index(name)]
        env = limiter_env(
            self._config,
            port=port,
            metrics_port=self._config.limiter_metrics_ports[LIMITER_SERVICES.index(name)],
            sentinel_hosts=topology.sentinel_hosts_env(),
            master_name=topology.master_name,
            redis_password=topology.password,
            sentinel_password=topology.sentinel_password or "",
        )
        self._env[name] = env
        node = start_limiter(
            self._group,
            name,
            port,
            env,
            host=self._config.host,
            timeout=self._config.startup_timeout,
        )
        self._limiters[name] = node
        return node

    def _launch_api(self, name: str, overrides: Mapping[str, str]) -> ApiNode:
        port = self._config.api_ports[API_SERVICES.index(name)]
        env = {**self._env.get(name, api_env(self._config, name=name, port=port)), **overrides}
        self._env[name] = env
        node = start_api(self._group, name, port, env, host=self._config.host)
        self._apis[name] = node
        return node

    def _start_nginx(self) -> None:
        first, second = (self._apis[name].address for name in API_SERVICES)
        self._nginx = start_nginx(
            self._group,
            NGINX_SERVICE,
            prefix=self._workdir / "nginx",
            port=self._config.nginx_port,
            api_servers=(first, second),
            host=self._config.host,
            worker_processes=self._config.nginx_workers,
            timeout=self._config.startup_timeout,
        )
        self._env[NGINX_SERVICE] = dict(self._nginx.variables)

    def _start_envoy(self) -> None:
        first, second = (self._apis[name].address for name in API_SERVICES)
        self._envoy = start_envoy(
            self._group,
            ENVOY_SERVICE,
            workdir=self._workdir / "envoy",
            settings=edge_settings(self._config, (first, second)),
            timeout=self._config.startup_timeout,
        )
        self._envoy.wait_healthy(UPSTREAM_CLUSTER, len(API_SERVICES), self._config.startup_timeout)

    def _start_prometheus(self) -> None:
        self._prometheus = start_prometheus(
            self._group,
            PROMETHEUS_SERVICE,
            workdir=self._workdir / "prometheus",
            port=self._config.prometheus_port,
            targets=scrape_targets(self._config),
            host=self._config.host,
            scrape_interval=self._config.scrape_interval,
            timeout=self._config.startup_timeout,
        )
        self._prometheus.wait_targets_up(self._config.startup_timeout)


def _in_parallel(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` in threads (they mostly wait on processes); return their results in
    order, or raise the first call's error after all have finished."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        errors = [future.exception() for future in futures]
        for error in errors:
            if error is not None:
                raise error
        return [future.result() for future in futures]
