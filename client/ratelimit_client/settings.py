"""The client's knobs: one frozen settings object, each field an env var with a default.

Built when the app starts (in its lifespan), never at import, so tests and embedding apps
can pass their own: ``LimiterSettings(limiter_addr="127.0.0.1:50051")`` or
``LimiterSettings.from_env({"LIMITER_ADDR": ...})``. Invalid values raise ``ConfigError``
naming the env var at fault.

==========================  ===================  ============================================
env var                     default              meaning
==========================  ===================  ============================================
``LIMITER_ADDR``            ``localhost:50051``  gRPC target of the limiter replicas, e.g.
                                                 ``dns:///limiter:50051`` or
                                                 ``ipv4:10.0.0.1:50051,10.0.0.2:50051``;
                                                 balanced client-side with ``round_robin``
``LIMITER_TIMEOUT_MS``      ``50``               deadline of one decision, retries included
                                                 (1 to 60000)
``LIMITER_MAX_IN_FLIGHT``   ``1``                gRPC calls in flight per process; decisions
                                                 asked meanwhile share the next call (a
                                                 batch); 1 to 1024
``LIMITER_FAILURE_MODE``    ``open``             limiter unreachable or late: ``open`` lets
                                                 the request through, ``closed`` denies it
``LIMITER_DENY_CACHE_SIZE`` ``1000``             denials remembered until their
                                                 ``retry_after``, so repeats are answered
                                                 without a call (``deny_cache``); 0 turns
                                                 it off (0 to 10000000)
``LIMITER_EDGE_DENY_MAX_S`` ``0``                most seconds an ``OVER_LIMIT`` 429 tells
                                                 the edge proxy it may repeat the denial
                                                 itself (``X-Accel-Expires``, for Nginx's
                                                 ``proxy_cache``); 0 sends no such header
                                                 (0 to 3600). Off by default: only safe
                                                 when the proxy's cache key determines the
                                                 rate-limit key (README "Deny cache")
``TRUSTED_PROXIES``         ``127.0.0.0/8,::1``  peers (IPs/CIDRs) whose ``X-Real-IP`` names
                                                 the client (FastAPI ``client_ip``); empty
                                                 trusts nobody
``LIMITER_TLS``             ``false``            ``true``: TLS, trusting the system's root
                                                 CAs unless ``LIMITER_TLS_CA`` is set;
                                                 ``LIMITER_TLS_CA`` or a client certificate
                                                 turns TLS on by itself
``LIMITER_TLS_CA``          --                   PEM file of the CAs the limiter's
                                                 certificate must chain to
``LIMITER_TLS_CLIENT_CERT`` --                   PEM certificate chain presented to the
                                                 limiter (mutual TLS); with the key below
``LIMITER_TLS_CLIENT_KEY``  --                   its PEM private key (unencrypted)
``LIMITER_TLS_SERVER_NAME`` --                   name to expect in the limiter's certificate
                                                 (and send as SNI) instead of the host in
                                                 ``LIMITER_ADDR``
==========================  ===================  ============================================

The TLS files are read when a client is created (``LimiterClient``,
``SyncLimiterClient``); one that is unreadable or not PEM raises ``ConfigError`` there.

Policies (quota and window) are the limiter's alone: every decision reports them.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ratelimit_client.deny_cache import DEFAULT_DENY_CACHE_SIZE

__all__ = ["ConfigError", "FailureMode", "IPNetwork", "LimiterSettings", "load_limiter_settings"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1"))


class ConfigError(ValueError):
    """Invalid client settings; the message names the env var and the problem."""


class FailureMode(enum.StrEnum):
    """What a request gets when no decision could be obtained from the limiter."""

    OPEN = "open"
    CLOSED = "closed"


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 192.0.2.1"`` as networks; raises ``ValueError`` naming a bad item."""
    networks: list[IPNetwork] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an integer") from None


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: must be 'true' or 'false', got {text!r}")


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class LimiterSettings:
    """Validated on construction; see the module docstring for each field's env var."""

    limiter_addr: str = "localhost:50051"
    timeout_ms: int = 50
    max_in_flight: int = 1
    failure_mode: FailureMode = FailureMode.OPEN
    deny_cache_size: int = DEFAULT_DENY_CACHE_SIZE
    edge_deny_max_s: int = 0
    trusted_proxies: tuple[IPNetwork, ...] = field(default=_LOOPBACK)
    tls: bool = False
    tls_ca: Path | None = None
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    tls_server_name: str | None = None

    def __post_init__(self) -> None:
        if not self.limiter_addr:
            raise ConfigError("LIMITER_ADDR: must not be empty")
        _in_range("LIMITER_TIMEOUT_MS", self.timeout_ms, 1, 60_000)
        _in_range("LIMITER_MAX_IN_FLIGHT", self.max_in_flight, 1, 1024)
        _in_range("LIMITER_DENY_CACHE_SIZE", self.deny_cache_size, 0, 10_000_000)
        _in_range("LIMITER_EDGE_DENY_MAX_S", self.edge_deny_max_s, 0, 3600)
        if not isinstance(self.failure_mode, FailureMode):
            raise ConfigError(f"LIMITER_FAILURE_MODE: not a FailureMode: {self.failure_mode!r}")
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ConfigError(
                "LIMITER_TLS_CLIENT_CERT and LIMITER_TLS_CLIENT_KEY: set both (a client "
                "certificate) or neither"
            )
        if self.tls_server_name is not None:
            if not self.tls_server_name.strip():
                raise ConfigError("LIMITER_TLS_SERVER_NAME: must not be empty")
            if not self.uses_tls:
                raise ConfigError("LIMITER_TLS_SERVER_NAME: set, but TLS is off")

    @property
    def uses_tls(self) -> bool:
        """Whether the channel is TLS: ``LIMITER_TLS``, a CA file or a client certificate."""
        return self.tls or self.tls_ca is not None or self.tls_client_cert is not None

    @property
    def timeout_s(self) -> float:
        """``LIMITER_TIMEOUT_MS`` in seconds."""
        return self.timeout_ms / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LimiterSettings:
        """Settings from ``environ`` (variables it lacks keep their defaults)."""
        values: dict[str, object] = {}
        if "LIMITER_ADDR" in environ:
            values["limiter_addr"] = environ["LIMITER_ADDR"].strip()
        if "LIMITER_TIMEOUT_MS" in environ:
            values["timeout_ms"] = _int("LIMITER_TIMEOUT_MS", environ["LIMITER_TIMEOUT_MS"])
        if "LIMITER_MAX_IN_FLIGHT" in environ:
            values["max_in_flight"] = _int(
                "LIMITER_MAX_IN_FLIGHT", environ["LIMITER_MAX_IN_FLIGHT"]
            )
        if "LIMITER_DENY_CACHE_SIZE" in environ:
            values["deny_cache_size"] = _int(
                "LIMITER_DENY_CACHE_SIZE", environ["LIMITER_DENY_CACHE_SIZE"]
            )
        if "LIMITER_EDGE_DENY_MAX_S" in environ:
            values["edge_deny_max_s"] = _int(
                "LIMITER_EDGE_DENY_MAX_S", environ["LIMITER_EDGE_DENY_MAX_S"]
            )
        if "LIMITER_FAILURE_MODE" in environ:
            mode = environ["LIMITER_FAILURE_MODE"].strip().lower()
            try:
                values["failure_mode"] = FailureMode(mode)
            except ValueError:
                raise ConfigError(
                    f"LIMITER_FAILURE_MODE: must be 'open' or 'closed', got {mode!r}"
                ) from None
        if "TRUSTED_PROXIES" in environ:
            try:
                values["trusted_proxies"] = parse_networks(environ["TRUSTED_PROXIES"])
            except ValueError as exc:
                raise ConfigError(f"TRUSTED_PROXIES: {exc}") from None
        for name, key in (
            ("LIMITER_TLS_CA", "tls_ca"),
            ("LIMITER_TLS_CLIENT_CERT", "tls_client_cert"),
            ("LIMITER_TLS_CLIENT_KEY", "tls_client_key"),
        ):
            if environ.get(name, "").strip():
                values[key] = Path(environ[name].strip())
        if environ.get("LIMITER_TLS_SERVER_NAME", "").strip():
            values["tls_server_name"] = environ["LIMITER_TLS_SERVER_NAME"].strip()
        if environ.get("LIMITER_TLS", "").strip():
            values["tls"] = _bool("LIMITER_TLS", environ["LIMITER_TLS"])
            if not values["tls"] and ("tls_ca" in values or "tls_client_cert" in values):
                raise ConfigError(
                    "LIMITER_TLS: false, but LIMITER_TLS_CA or LIMITER_TLS_CLIENT_CERT is set"
                )
        return cls(**values)  # type: ignore[arg-type]


def load_limiter_settings() -> LimiterSettings:
    """Settings from the process environment; raises ``ConfigError`` naming the env var."""
    return LimiterSettings.from_env(os.environ)
