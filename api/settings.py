"""The rate-limit client's knobs: one flat settings object, each field an env var with a default.

Built when the app starts (in its lifespan), never at import, so tests and embedding apps can
pass their own. ``load_limiter_settings`` turns validation failures into ``ConfigError``
naming the env var at fault.

==========================  =================  ==============================================
env var                     default            meaning
==========================  =================  ==============================================
``LIMITER_ADDR``            ``localhost:50051``  gRPC target of the limiter replicas, e.g.
                                               ``dns:///limiter:50051`` or
                                               ``ipv4:10.0.0.1:50051,10.0.0.2:50051``;
                                               balanced client-side with ``round_robin``
``LIMITER_TIMEOUT_MS``      ``50``             deadline of one decision, retries included
``LIMITER_MAX_IN_FLIGHT``   ``1``              gRPC calls in flight per process; decisions
                                               asked meanwhile share the next call (a batch)
``LIMITER_FAILURE_MODE``    ``open``           limiter unreachable or late: ``open`` lets the
                                               request through, ``closed`` answers 503
``TRUSTED_PROXIES``         ``127.0.0.0/8,::1``  peers (IPs/CIDRs) whose ``X-Real-IP`` names
                                               the client; empty trusts nobody
==========================  =================  ==============================================

Policies (quota and window) are the limiter's alone: the ``RateLimit-Policy`` header is
built from what the limiter reports with each decision, so nothing here repeats them.
``TIME_WINDOW`` and ``LIMITER_POLICY_WINDOWS``, which earlier versions read for ``w``, are
no longer read (set, they are ignored).
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Annotated

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ConfigError", "FailureMode", "IPNetwork", "LimiterSettings", "load_limiter_settings"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """Invalid client settings; the message names the env var and the problem."""


class FailureMode(enum.StrEnum):
    """What a request gets when no decision could be obtained from the limiter."""

    OPEN = "open"
    CLOSED = "closed"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class LimiterSettings(BaseSettings):
    """Read from the environment (see the module docstring); keyword arguments use the env
    var names, e.g. ``LimiterSettings(LIMITER_ADDR="127.0.0.1:50051")``."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, frozen=True)

    limiter_addr: str = Field(
        "localhost:50051", min_length=1, validation_alias=_env("LIMITER_ADDR")
    )
    timeout_ms: int = Field(50, ge=1, le=60_000, validation_alias=_env("LIMITER_TIMEOUT_MS"))
    max_in_flight: int = Field(1, ge=1, le=1024, validation_alias=_env("LIMITER_MAX_IN_FLIGHT"))
    failure_mode: FailureMode = Field(
        FailureMode.OPEN, validation_alias=_env("LIMITER_FAILURE_MODE")
    )
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = Field(
        (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")),
        validation_alias=_env("TRUSTED_PROXIES"),
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks: list[IPNetwork] = []
        for item in _items(value):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return tuple(networks)

    @property
    def timeout_s(self) -> float:
        """``LIMITER_TIMEOUT_MS`` in seconds."""
        return self.timeout_ms / 1000


def load_limiter_settings() -> LimiterSettings:
    """Settings from the environment; raises ``ConfigError`` naming the env var at fault."""
    try:
        return LimiterSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid rate-limit settings: {problems}") from None
