"""The demo service's own knobs (the rate limiter's are ``ratelimit_client``'s).

==================  ===========  =====================================================
env var             default      meaning
==================  ===========  =====================================================
``API_INSTANCE``    ``api``      replica name, shown in every body and ``X-Served-By``
``API_HOST``        ``0.0.0.0``  address ``api.main:run()`` listens on
``API_PORT``        ``8000``     port ``api.main:run()`` listens on
``API_ACCESS_LOG``  ``false``    one log line per request (costs throughput)
==================  ===========  =====================================================

The rate-limit client's settings are ``LimiterSettings``'s, read from the same environment,
with one default of the demo's own: ``LIMITER_EDGE_DENY_MAX_S`` is 5, not 0, because the
demo's Nginx caches ``/limited_endpoint``'s 429s keyed by the client's address, which is
exactly what ``client_ip`` charges (README "Deny cache").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ratelimit_client import ConfigError, LimiterSettings

__all__ = [
    "DEMO_EDGE_DENY_MAX_S",
    "DemoSettings",
    "load_demo_limiter_settings",
    "load_demo_settings",
]

DEMO_EDGE_DENY_MAX_S = 5

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class DemoSettings:
    """Validated on construction; see the module docstring for each field's env var."""

    instance: str = "api"
    host: str = "0.0.0.0"
    port: int = 8000
    access_log: bool = False

    def __post_init__(self) -> None:
        if not self.instance or not all(" " < char <= "~" for char in self.instance):
            raise ConfigError(
                "API_INSTANCE: must be printable ASCII without spaces (it is sent as a header)"
            )
        if not self.host:
            raise ConfigError("API_HOST: must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"API_PORT: must be between 0 and 65535, got {self.port}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DemoSettings:
        """Settings from ``environ`` (variables it lacks keep their defaults)."""
        values: dict[str, object] = {}
        if "API_INSTANCE" in environ:
            values["instance"] = environ["API_INSTANCE"]
        if "API_HOST" in environ:
            values["host"] = environ["API_HOST"].strip()
        if "API_PORT" in environ:
            try:
                values["port"] = int(environ["API_PORT"])
            except ValueError:
                raise ConfigError(f"API_PORT: {environ['API_PORT']!r} is not an integer") from None
        if "API_ACCESS_LOG" in environ:
            flag = environ["API_ACCESS_LOG"].strip().lower()
            if flag not in _TRUE | _FALSE:
                raise ConfigError(f"API_ACCESS_LOG: {flag!r} is not a boolean")
            values["access_log"] = flag in _TRUE
        return cls(**values)  # type: ignore[arg-type]


def load_demo_settings() -> DemoSettings:
    """Settings from the environment; raises ``ConfigError`` naming the env var at fault."""
    return DemoSettings.from_env(os.environ)


def load_demo_limiter_settings(environ: Mapping[str, str] = os.environ) -> LimiterSettings:
    """The rate-limit client's settings from ``environ``, ``LIMITER_EDGE_DENY_MAX_S``
    defaulting to ``DEMO_EDGE_DENY_MAX_S``; raises ``ConfigError`` naming the env var."""
    return LimiterSettings.from_env(
        {"LIMITER_EDGE_DENY_MAX_S": str(DEMO_EDGE_DENY_MAX_S), **environ}
    )
