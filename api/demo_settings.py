"""The demo service's own knobs (the rate limiter's are in ``api.settings``).

==================  ===========  =====================================================
env var             default      meaning
==================  ===========  =====================================================
``API_INSTANCE``    ``api``      replica name, shown in every body and ``X-Served-By``
``API_HOST``        ``0.0.0.0``  address ``api.main:run()`` listens on
``API_PORT``        ``8000``     port ``api.main:run()`` listens on
``API_ACCESS_LOG``  ``false``    one log line per request (costs throughput)
==================  ===========  =====================================================
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.settings import ConfigError

__all__ = ["DemoSettings", "load_demo_settings"]


class DemoSettings(BaseSettings):
    """Read from the environment; keyword arguments use the env var names."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, frozen=True)

    instance: str = Field("api", min_length=1, validation_alias=AliasChoices("API_INSTANCE"))
    host: str = Field("0.0.0.0", min_length=1, validation_alias=AliasChoices("API_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=AliasChoices("API_PORT"))
    access_log: bool = Field(False, validation_alias=AliasChoices("API_ACCESS_LOG"))

    @field_validator("instance")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        if not all(" " < char <= "~" for char in value):
            raise ValueError("must be printable ASCII without spaces (it is sent as a header)")
        return value


def load_demo_settings() -> DemoSettings:
    """Settings from the environment; raises ``ConfigError`` naming the env var at fault."""
    try:
        return DemoSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid demo settings: {problems}") from None
