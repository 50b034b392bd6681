"""Settings from the environment: defaults, parsing, refusals."""

from __future__ import annotations

import pytest

from limiter_service.decision import FailureMode
from limiter_service.errors import ConfigError
from limiter_service.settings import BackendKind, load_settings

ENV_NAMES = (
    "LIMITER_BACKEND",
    "REDIS_URL",
    "SENTINEL_HOSTS",
    "REDIS_MASTER",
    "REDIS_PASSWORD",
    "REDIS_TIMEOUT_MS",
    "LIMITER_KEY_PREFIX",
    "LIMITER_FAILURE_MODE",
    "RATE_LIMIT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.resolved_backend() is BackendKind.MEMORY
    assert settings.redis_timeout_ms == 25
    assert settings.failure_mode is FailureMode.OPEN
    assert (settings.rate_limit, settings.time_window) == (10, 60)
    assert settings.listen == "0.0.0.0:50051"


def test_sentinel_hosts_select_the_sentinel_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_HOSTS", "sentinel-1:26379, 10.0.0.2:26380")
    monkeypatch.setenv("REDIS_MASTER", "redis-master")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.resolved_backend() is BackendKind.SENTINEL
    assert settings.sentinel_hosts == [("sentinel-1", 26379), ("10.0.0.2", 26380)]
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SENTINEL_HOSTS", "sentinel-1", "SENTINEL_HOSTS"),
        ("REDIS_TIMEOUT_MS", "0", "REDIS_TIMEOUT_MS"),
        ("LIMITER_FAILURE_MODE", "maybe", "LIMITER_FAILURE_MODE"),
        ("LIMITER_KEY_PREFIX", "rl{x}", "LIMITER_KEY_PREFIX"),
        ("RATE_LIMIT", "ten", "RATE_LIMIT"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_explicit_backend_needs_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITER_BACKEND", "redis")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings()


def test_the_master_lease_defaults_to_twice_the_health_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIMITER_MASTER_LEASE_MS", raising=False)
    monkeypatch.setenv("LIMITER_HEALTH_INTERVAL_MS", "750")
    assert load_settings().master_lease_s == 1.5
    monkeypatch.setenv("LIMITER_MASTER_LEASE_MS", "5000")
    assert load_settings().master_lease_s == 5.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SOURCE_ADDRESS": "not-an-ip"}, "REDIS_SOURCE_ADDRESS"),
        ({"LIMITER_MASTER_LEASE_MS": "50"}, "LIMITER_MASTER_LEASE_MS"),
        ({"REDIS_TLS_CA": "/no/such/ca.pem"}, "REDIS_TLS_CA"),
        ({"REDIS_TLS_CA": __file__, "REDIS_TLS_CERT": __file__}, "REDIS_TLS_KEY"),
    ],
)
def test_redis_access_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name in ("REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY", "LIMITER_MASTER_LEASE_MS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()
