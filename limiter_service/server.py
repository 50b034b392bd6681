"""Process entry point: settings -> backend -> limiter -> gRPC server, and a clean exit.

``limiter-service`` / ``python -m limiter_service``. Exit codes: 0 after SIGTERM/SIGINT
(in-flight RPCs finish within ``LIMITER_SHUTDOWN_GRACE_S``), 2 for invalid configuration
(the message names the env var, or the policies file, policy and field). With
``LIMITER_WORKERS`` > 1 this process supervises that many servers instead
(``limiter_service.workers``), each of them running ``serve`` as a worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from limiter_service.admission import Admission, AdmissionLimits
from limiter_service.backends.base import Backend
from limiter_service.backends.cluster import ClusterBackend
from limiter_service.backends.connection import RedisAccess, StaticConnector, TlsFiles
from limiter_service.backends.memory import MemoryBackend
from limiter_service.backends.redis import RedisBackend
from limiter_service.backends.sentinel import SentinelConnector
from limiter_service.connections import connection_options
from limiter_service.decision import Algorithm
from limiter_service.deny_cache import DenyCache
from limiter_service.envoy import proto as envoy_proto
from limiter_service.envoy.config import EnvoyConfig, load_envoy_config
from limiter_service.envoy.service import EnvoyRateLimitService
from limiter_service.errors import ConfigError
from limiter_service.grpc_service import MAX_MESSAGE_BYTES, RateLimiterService
from limiter_service.health import ENVOY_SERVICE, SERVICES, HealthReporter
from limiter_service.limiter import Limiter
from limiter_service.memory import MemoryTrimmer
from limiter_service.metrics import NO_METRICS, Metrics, MetricsEndpoint, PrometheusMetrics
from limiter_service.policies import PolicySet, default_policies, load_policies
from limiter_service.reflection import enable_reflection
from limiter_service.reload import FileReloader, PolicyReloader
from limiter_service.settings import BackendKind, Settings, load_settings
from limiter_service.tls import reload_handler, server_tls
from limiter_service.worker_metrics import WorkerPublisher
from limiter_service.workers import WorkerRole, die_with_parent, supervise, worker_role
from ratelimit_client import proto

log = logging.getLogger("limiter_service")


def build_backend(settings: Settings, metrics: Metrics = NO_METRICS) -> Backend:
    """The backend the settings ask for; ``metrics`` watches its master, if it has one."""
    kind = settings.resolved_backend()
    if kind is BackendKind.MEMORY:
        return MemoryBackend()
    timeout_s = settings.redis_timeout_ms / 1000
    tls = None
    if settings.redis_tls_ca is not None:
        cert, key = settings.redis_tls_cert, settings.redis_tls_key
        tls = TlsFiles(
            str(settings.redis_tls_ca),
            str(cert) if cert is not None else None,
            str(key) if key is not None else None,
        )
    data = RedisAccess(
        settings.redis_username,
        settings.redis_password.get_secret_value(),
        tls,
        settings.redis_source_address or None,
    )
    if kind is BackendKind.CLUSTER:
        cluster = ClusterBackend(
            settings.redis_cluster_nodes, data, timeout_s, settings.redis_max_connections
        )
        metrics.watch(master=cluster)
        return cluster
    if kind is BackendKind.REDIS:
        connector: StaticConnector | SentinelConnector = StaticConnector(
            settings.redis_url, data, timeout_s, settings.redis_max_connections
        )
    else:
        sentinel_tls = settings.sentinel_tls if settings.sentinel_tls is not None else bool(tls)
        sentinel = RedisAccess(
            settings.sentinel_username,
            settings.sentinel_password.get_secret_value(),
            tls if sentinel_tls else None,
            data.source_address,
        )
        connector = SentinelConnector(
            settings.sentinel_hosts,
            settings.redis_master,
            data,
            sentinel,
            timeout_s,
            settings.redis_max_connections,
            lease_s=settings.master_lease_s,
        )
    metrics.watch(master=connector)
    return RedisBackend(connector, timeout_s)


def build_policies(settings: Settings) -> PolicySet:
    if settings.policies_file is not None:
        return load_policies(settings.policies_file)
    return default_policies(settings.rate_limit, settings.time_window)


def build_envoy_config(settings: Settings) -> EnvoyConfig | None:
    """The Envoy configuration (``LIMITER_ENVOY_CONFIG``), or ``None`` when unset (the Envoy
    service is then not served)."""
    if settings.envoy_config is None:
        return None
    return load_envoy_config(settings.envoy_config)


def envoy_reloader(
    service: EnvoyRateLimitService, path: Path, settings: Settings, metrics: Metrics
) -> FileReloader[EnvoyConfig]:
    """Reloads ``service``'s configuration from ``path`` (watched as the policies file is);
    applying it drops the limiter's deny cache (``EnvoyRateLimitService.config``)."""

    def apply(config: EnvoyConfig) -> None:
        service.config = config

    return FileReloader(
        path,
        load_envoy_config,
        apply,
        what="envoy config",
        noun="envoy config",
        describe=lambda config: "domains " + ", ".join(config.domains),
        interval_s=settings.policies_watch_ms / 1000,
        on_reload=metrics.reloaded,
    )


def build_metrics(settings: Settings) -> Metrics:
    """Prometheus metrics, or ``NO_METRICS`` when ``LIMITER_METRICS_LISTEN`` is empty
    (nothing recorded either)."""
    if settings.metrics_address is None:
        return NO_METRICS
    return PrometheusMetrics(settings.metrics_near_limit_ratio)


def serve_metrics(settings: Settings, metrics: Metrics) -> MetricsEndpoint | None:
    """Serve ``/metrics`` where the settings say; raises ``ConfigError`` naming
    ``LIMITER_METRICS_LISTEN`` when that address cannot be bound."""
    address = settings.metrics_address
    if address is None or not isinstance(metrics, PrometheusMetrics):
        return None
    try:
        return metrics.serve(*address)
    except OSError as exc:
        raise ConfigError(
            f"LIMITER_METRICS_LISTEN: cannot listen on {settings.metrics_listen} "
            f"({exc.strerror or exc})"
        ) from None


def build_limiter(settings: Settings, metrics: Metrics = NO_METRICS) -> Limiter:
    policies = build_policies(settings)
    limiter = Limiter(
        policies,
        build_backend(settings, metrics),
        key_prefix=settings.key_prefix,
        max_key_bytes=settings.max_key_bytes,
        failure_mode=settings.failure_mode,
        decision_timeout_s=settings.decision_timeout_ms / 1000,
        # One connection stays free for the health check.
        max_in_flight=max(1, settings.redis_max_connections - 1),
        coalesce_window_s=settings.coalesce_window_us / 1e6,
        admission=Admission(
            AdmissionLimits(
                max_rpcs=settings.max_rpcs_in_flight,
                max_peer_rpcs=settings.max_peer_rpcs_in_flight,
                max_decisions=settings.max_decisions_in_flight,
                max_peer_decisions=settings.max_peer_decisions_in_flight,
            )
        ),
        metrics=metrics,
        deny_cache=DenyCache(settings.deny_cache_size) if settings.deny_cache_size else None,
    )
    metrics.watch(policies=lambda: limiter.policies, admission=limiter.admission)
    return limiter


async def serve(settings: Settings, worker: WorkerRole | None = None) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight RPCs and return; on SIGHUP, reload
    the TLS certificates (``limiter_service.tls``), the policies file and the Envoy
    configuration (``limiter_service.reload``, which also watches them). A ``worker``
    shares its port (``SO_REUSEPORT``) and leaves ``/metrics`` to its parent, publishing
    to it (``limiter_service.worker_metrics``)."""
    tls = server_tls(settings)
    metrics = build_metrics(settings)
    envoy_config = build_envoy_config(settings)
    limiter = build_limiter(settings, metrics)
    reloaders: list[FileReloader[PolicySet] | FileReloader[EnvoyConfig]] = []
    if settings.policies_file is not None:
        reloaders.append(
            PolicyReloader(
                limiter,
                settings.policies_file,
                interval_s=settings.policies_watch_ms / 1000,
                on_reload=metrics.reloaded,
            )
        )
    envoy = None
    if envoy_config is not None and settings.envoy_config is not None:
        envoy = EnvoyRateLimitService(limiter, envoy_config, settings.key_prefix)
        reloaders.append(envoy_reloader(envoy, settings.envoy_config, settings, metrics))
    health = HealthReporter(
        limiter.backend,
        interval_s=settings.health_interval_ms / 1000,
        # A probe decision gets what a real one gets (a busy host's slower answers are
        # not an outage), within one health interval.
        timeout_s=max(min(settings.decision_timeout_ms, settings.health_interval_ms) / 1000, 0.05),
        key_prefix=settings.key_prefix,
        last_fallback=lambda: limiter.fallbacks.last_at,
        metrics=metrics,
        services=SERVICES if envoy is None else (*SERVICES, ENVOY_SERVICE),
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0 if worker is None else 1),
            *connection_options(settings),
        ]
    )
    RateLimiterService(limiter).add_to(server)
    if envoy is not None:
        envoy.add_to(server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    if settings.reflection:
        served: tuple[str, ...] = (proto.SERVICE_NAME, "grpc.health.v1.Health")
        if envoy is not None:
            served += (envoy_proto.SERVICE_NAME,)
        enable_reflection(server, served)
    try:
        if tls is None:
            server.add_insecure_port(settings.listen)
        else:
            server.add_secure_port(settings.listen, tls.credentials())
    except RuntimeError:
        raise ConfigError(
            f"LIMITER_LISTEN: cannot listen on {settings.listen} (in use, or not an address)"
        ) from None
    metrics_endpoint = publisher = None
    if worker is None:
        metrics_endpoint = serve_metrics(settings, metrics)
    elif isinstance(metrics, PrometheusMetrics):
        publisher = WorkerPublisher(metrics)
        publisher.start()
    await health.check_once()
    health.start()
    trimmer = MemoryTrimmer(settings.memory_trim_interval_s)
    trimmer.start()
    await server.start()
    log.info(
        json.dumps(
            {
                "event": "started",
                "listen": settings.listen,
                "backend": limiter.backend.description,
                "policies": [
                    {
                        "name": p.name,
                        "limit": p.limit,
                        "window_us": p.window_us,
                        "algorithm": p.algorithm.value,
                        **({"burst": p.burst} if p.algorithm is Algorithm.TOKEN_BUCKET else {}),
                        **({"match": p.match} if p.match else {}),
                    }
                    for p in limiter.policies
                ],
                "failure_mode": settings.failure_mode.value,
                "tls": "off" if tls is None else tls.files.mode,
                "reflection": settings.reflection,
                "metrics": settings.metrics_listen or "off",
                "deny_cache_size": settings.deny_cache_size,
                "envoy_domains": list(envoy.config.domains) if envoy is not None else None,
                **({} if worker is None else {"worker": worker.index, "pid": os.getpid()}),
            }
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reload_tls = reload_handler(tls)

    def on_sighup() -> None:
        reload_tls()
        for reloader in reloaders:
            reloader.reload("SIGHUP")

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    # A worker starts with SIGHUP blocked (workers.py); from here on it is handled.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    for reloader in reloaders:
        reloader.start()
    await stop.wait()
    log.info("stopping: finishing in-flight RPCs (grace %.1fs)", settings.shutdown_grace_s)
    await health.shutdown()
    for reloader in reloaders:
        await reloader.stop()
    await trimmer.stop()
    await server.stop(settings.shutdown_grace_s)
    await limiter.close()
    if metrics_endpoint is not None:
        metrics_endpoint.close()
    if publisher is not None:
        await publisher.stop()
    log.info("stopped")


def check_config(args: list[str]) -> int:
    """``limiter-service check-config [--envoy PATH]... [FILE]...``: validate policies files,
    and with ``--envoy`` Envoy configuration files or directories, as a reload would; 0 when
    all are valid, 2 with the error (file, then policy and field or the path in the tree)
    otherwise."""
    usage = "usage: limiter-service check-config [--envoy FILE_OR_DIR]... [FILE]..."
    policies: list[str] = []
    envoy: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--envoy":
            path = next(rest, None)
            if path is None:
                print(usage, file=sys.stderr)
                return 2
            envoy.append(path)
        else:
            policies.append(arg)
    if not policies and not envoy:
        print(usage, file=sys.stderr)
        return 2
    try:
        for path in policies:
            loaded = load_policies(Path(path))
            print(f"ok: {path}: {len(loaded.names)} policies ({', '.join(loaded.names)})")
        for path in envoy:
            config = load_envoy_config(Path(path))
            rules = sum(1 for _ in config.rules())
            print(f"ok: {path}: {rules} rules in domains {', '.join(config.domains)}")
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``limiter-service`` (``check-config ...`` validates files)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "check-config":
        return check_config(args[1:])
    if args:
        print(
            f"unknown arguments {args}; usage: limiter-service [check-config "
            "[--envoy FILE_OR_DIR]... [FILE]...]",
            file=sys.stderr,
        )
        return 2
    role = worker_role()
    if role is not None:
        die_with_parent(role)
    tag = "" if role is None else f" [worker {role.index} pid {os.getpid()}]"
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s{tag} %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings()
        logging.getLogger().setLevel(settings.log_level)
        workers = settings.resolved_workers()
        if role is None and workers > 1:
            return supervise(settings, workers)
        asyncio.run(serve(settings, role))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
