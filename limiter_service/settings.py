"""Every knob of the service: one flat settings object, each field an env var with a default.

Unsafe values are refused at start (``ConfigError``), so a running service is a configured one.
The README's configuration reference lists the same names, defaults and meanings.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from limiter_service.decision import FailureMode
from limiter_service.deny_cache import DEFAULT_DENY_CACHE_SIZE
from limiter_service.errors import ConfigError


class BackendKind(enum.StrEnum):
    AUTO = "auto"
    MEMORY = "memory"
    REDIS = "redis"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Read from the environment; see the README's configuration reference."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, populate_by_name=False)

    listen: str = Field("0.0.0.0:50051", validation_alias=_env("LIMITER_LISTEN"))
    backend: BackendKind = Field(BackendKind.AUTO, validation_alias=_env("LIMITER_BACKEND"))
    redis_url: str = Field("", validation_alias=_env("REDIS_URL"))
    sentinel_hosts: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SENTINEL_HOSTS")
    )
    redis_master: str = Field("mymaster", validation_alias=_env("REDIS_MASTER"))
    redis_cluster_nodes: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list, validation_alias=_env("REDIS_CLUSTER_NODES")
    )
    redis_password: SecretStr = Field(SecretStr(""), validation_alias=_env("REDIS_PASSWORD"))
    sentinel_password: SecretStr = Field(SecretStr(""), validation_alias=_env("SENTINEL_PASSWORD"))
    redis_timeout_ms: int = Field(25, ge=1, le=60_000, validation_alias=_env("REDIS_TIMEOUT_MS"))
    redis_max_connections: int = Field(
        4, ge=2, le=1024, validation_alias=_env("REDIS_MAX_CONNECTIONS")
    )
    # batching.Coalescer: a busy limiter sends pending decisions once its event loop has
    # nothing else ready, or after this long (0: on the next turn, as they come).
    coalesce_window_us: int = Field(
        1000, ge=0, le=10_000, validation_alias=_env("LIMITER_COALESCE_WINDOW_US")
    )
    policies_file: Path | None = Field(None, validation_alias=_env("LIMITER_POLICIES"))
    # envoyproxy/ratelimit YAML: a file or a directory of *.yaml/*.yml (limiter_service.envoy).
    envoy_config: Path | None = Field(None, validation_alias=_env("LIMITER_ENVOY_CONFIG"))
    policies_watch_ms: int = Field(
        1000, ge=0, le=3_600_000, validation_alias=_env("LIMITER_POLICIES_WATCH_MS")
    )
    rate_limit: int = Field(10, ge=1, le=2**32 - 1, validation_alias=_env("RATE_LIMIT"))
    time_window: int = Field(60, ge=1, validation_alias=_env("TIME_WINDOW"))
    key_prefix: str = Field("rl", min_length=1, validation_alias=_env("LIMITER_KEY_PREFIX"))
    failure_mode: FailureMode = Field(
        FailureMode.OPEN, validation_alias=_env("LIMITER_FAILURE_MODE")
    )
    decision_timeout_ms: int = Field(
        100, ge=1, le=60_000, validation_alias=_env("LIMITER_DECISION_TIMEOUT_MS")
    )
    max_key_bytes: int = Field(512, ge=1, le=16_384, validation_alias=_env("LIMITER_MAX_KEY_BYTES"))
    health_interval_ms: int = Field(
        1000, ge=50, le=60_000, validation_alias=_env("LIMITER_HEALTH_INTERVAL_MS")
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, le=600, validation_alias=_env("LIMITER_SHUTDOWN_GRACE_S")
    )
    # Admission control (admission.py). A decision limit below 1000 would shed every
    # full-size batch.
    max_rpcs_in_flight: int = Field(
        2000, ge=1, le=1_000_000, validation_alias=_env("LIMITER_MAX_RPCS_IN_FLIGHT")
    )
    max_peer_rpcs_in_flight: int = Field(
        500, ge=1, le=1_000_000, validation_alias=_env("LIMITER_MAX_PEER_RPCS_IN_FLIGHT")
    )
    max_decisions_in_flight: int = Field(
        4000, ge=1000, le=10_000_000, validation_alias=_env("LIMITER_MAX_DECISIONS_IN_FLIGHT")
    )
    max_peer_decisions_in_flight: int = Field(
        1000, ge=1000, le=10_000_000, validation_alias=_env("LIMITER_MAX_PEER_DECISIONS_IN_FLIGHT")
    )
    # Connection hygiene (gRPC core's channel args of the same names).
    keepalive_time_ms: int = Field(
        60_000, ge=1000, le=86_400_000, validation_alias=_env("LIMITER_KEEPALIVE_TIME_MS")
    )
    keepalive_timeout_ms: int = Field(
        20_000, ge=100, le=600_000, validation_alias=_env("LIMITER_KEEPALIVE_TIMEOUT_MS")
    )
    max_connection_idle_ms: int = Field(
        300_000, ge=100, le=86_400_000, validation_alias=_env("LIMITER_MAX_CONNECTION_IDLE_MS")
    )
    max_connection_age_ms: int = Field(
        300_000, ge=100, le=86_400_000, validation_alias=_env("LIMITER_MAX_CONNECTION_AGE_MS")
    )
    max_connection_age_grace_ms: int = Field(
        10_000, ge=0, le=3_600_000, validation_alias=_env("LIMITER_MAX_CONNECTION_AGE_GRACE_MS")
    )
    max_concurrent_streams: int = Field(
        100, ge=1, le=100_000, validation_alias=_env("LIMITER_MAX_CONCURRENT_STREAMS")
    )
    memory_trim_interval_s: float = Field(
        10.0, ge=0, le=3600, validation_alias=_env("LIMITER_MEMORY_TRIM_INTERVAL_S")
    )
    log_level: str = Field("INFO", validation_alias=_env("LIMITER_LOG_LEVEL"))
    redis_source_address: str = Field("", validation_alias=_env("REDIS_SOURCE_ADDRESS"))
    redis_username: str = Field("", validation_alias=_env("REDIS_USERNAME"))
    sentinel_username: str = Field("", validation_alias=_env("SENTINEL_USERNAME"))
    redis_tls_ca: Path | None = Field(None, validation_alias=_env("REDIS_TLS_CA"))
    redis_tls_cert: Path | None = Field(None, validation_alias=_env("REDIS_TLS_CERT"))
    redis_tls_key: Path | None = Field(None, validation_alias=_env("REDIS_TLS_KEY"))
    sentinel_tls: bool | None = Field(None, validation_alias=_env("SENTINEL_TLS"))
    master_lease_ms: int | None = Field(
        None, ge=100, le=600_000, validation_alias=_env("LIMITER_MASTER_LEASE_MS")
    )
    tls_cert: Path | None = Field(None, validation_alias=_env("LIMITER_TLS_CERT"))
    tls_key: Path | None = Field(None, validation_alias=_env("LIMITER_TLS_KEY"))
    tls_client_ca: Path | None = Field(None, validation_alias=_env("LIMITER_TLS_CLIENT_CA"))
    reflection: bool = Field(True, validation_alias=_env("LIMITER_REFLECTION"))
    metrics_listen: str = Field("0.0.0.0:9090", validation_alias=_env("LIMITER_METRICS_LISTEN"))
    metrics_near_limit_ratio: float = Field(
        0.2, gt=0, le=1, validation_alias=_env("LIMITER_METRICS_NEAR_LIMIT_RATIO")
    )
    # Denials answered without a round trip (deny_cache.py); 0 turns the cache off.
    deny_cache_size: int = Field(
        DEFAULT_DENY_CACHE_SIZE,
        ge=0,
        le=10_000_000,
        validation_alias=_env("LIMITER_DENY_CACHE_SIZE"),
    )

    # Server processes on the one port (workers.py); unset: one per CPU available to the
    # process, except for the memory backend (one).
    workers: int | None = Field(None, ge=1, le=256, validation_alias=_env("LIMITER_WORKERS"))

    @field_validator("sentinel_hosts", "redis_cluster_nodes", mode="before")
    @classmethod
    def _parse_hosts(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        hosts: list[tuple[str, int]] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
            hosts.append((host.strip("[]"), int(port)))
        return hosts

    @field_validator(
        "tls_cert", "tls_key", "tls_client_ca", "envoy_config", "workers", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_tls_ca", "redis_tls_cert", "redis_tls_key", mode="before")
    @classmethod
    def _unset_or_readable(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if value is not None and not Path(str(value)).is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _host_port_or_empty(cls, value: str) -> str:
        value = value.strip()
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port (empty turns metrics off)")
        return value

    @field_validator("redis_source_address")
    @classmethod
    def _ip_or_empty(cls, value: str) -> str:
        value = value.strip()
        if value:
            ipaddress.ip_address(value)  # ValueError names the value
        return value

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("must not contain '{' or '}' (keys are hash-tagged after it)")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where ``/metrics`` is served (``LIMITER_METRICS_LISTEN``); ``None``: metrics
        are off (neither served nor recorded)."""
        if not self.metrics_listen:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def master_lease_s(self) -> float:
        """``LIMITER_MASTER_LEASE_MS`` in seconds; unset: twice the health interval."""
        lease_ms = self.master_lease_ms or 2 * self.health_interval_ms
        return lease_ms / 1000

    def resolved_workers(self) -> int:
        """``LIMITER_WORKERS``; unset: 1 on the memory backend (its counters live in one
        process), else the number of CPUs this process may run on."""
        if self.workers is not None:
            return self.workers
        if self.resolved_backend() is BackendKind.MEMORY:
            return 1
        return len(os.sched_getaffinity(0))

    def resolved_backend(self) -> BackendKind:
        """``auto`` picks sentinel when SENTINEL_HOSTS is set, else cluster when
        REDIS_CLUSTER_NODES is set, else redis when REDIS_URL is set, else the embedded
        memory backend."""
        if self.backend is not BackendKind.AUTO:
            return self.backend
        if self.sentinel_hosts:
            return BackendKind.SENTINEL
        if self.redis_cluster_nodes:
            return BackendKind.CLUSTER
        if self.redis_url:
            return BackendKind.REDIS
        return BackendKind.MEMORY


def load_settings() -> Settings:
    """Settings from the environment; raises ``ConfigError`` naming the env var at fault."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    kind = settings.resolved_backend()
    if kind is BackendKind.SENTINEL and not settings.sentinel_hosts:
        raise ConfigError("LIMITER_BACKEND=sentinel needs SENTINEL_HOSTS=host:port,...")
    if kind is BackendKind.CLUSTER and not settings.redis_cluster_nodes:
        raise ConfigError("LIMITER_BACKEND=cluster needs REDIS_CLUSTER_NODES=host:port,...")
    if kind is BackendKind.REDIS and not settings.redis_url:
        raise ConfigError("LIMITER_BACKEND=redis needs REDIS_URL=redis://host:port/db")
    if kind is BackendKind.MEMORY and settings.resolved_workers() > 1:
        raise ConfigError(
            f"LIMITER_WORKERS={settings.workers}: the memory backend keeps its counters "
            "inside one process, so it runs one worker (set LIMITER_WORKERS=1, or use "
            "Redis: REDIS_URL, SENTINEL_HOSTS or REDIS_CLUSTER_NODES)"
        )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("LIMITER_TLS_CERT and LIMITER_TLS_KEY: set both (TLS) or neither")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise ConfigError("LIMITER_TLS_CLIENT_CA needs LIMITER_TLS_CERT and LIMITER_TLS_KEY")
    for peer_name, peer_max, name, most in (
        (
            "LIMITER_MAX_PEER_RPCS_IN_FLIGHT",
            settings.max_peer_rpcs_in_flight,
            "LIMITER_MAX_RPCS_IN_FLIGHT",
            settings.max_rpcs_in_flight,
        ),
        (
            "LIMITER_MAX_PEER_DECISIONS_IN_FLIGHT",
            settings.max_peer_decisions_in_flight,
            "LIMITER_MAX_DECISIONS_IN_FLIGHT",
            settings.max_decisions_in_flight,
        ),
    ):
        if peer_max > most:
            raise ConfigError(f"{peer_name} ({peer_max}) must not exceed {name} ({most})")
    if settings.coalesce_window_us * 2 > settings.decision_timeout_ms * 1000:
        raise ConfigError(
            f"LIMITER_COALESCE_WINDOW_US ({settings.coalesce_window_us}) must be at most half "
            f"of LIMITER_DECISION_TIMEOUT_MS ({settings.decision_timeout_ms} ms): a decision "
            "may wait that long before its round trip starts"
        )
    if (settings.redis_tls_cert is None) != (settings.redis_tls_key is None):
        raise ConfigError("REDIS_TLS_CERT and REDIS_TLS_KEY: set both or neither")
    if settings.redis_tls_cert is not None and settings.redis_tls_ca is None:
        raise ConfigError("REDIS_TLS_CERT needs REDIS_TLS_CA (TLS towards Redis)")
    return settings
