"""Client settings: defaults, env parsing, and errors that name the env var."""

from __future__ import annotations

import ipaddress

import pytest

from api.settings import ConfigError, FailureMode, LimiterSettings, load_limiter_settings

ENV_VARS = (
    "LIMITER_ADDR",
    "LIMITER_TIMEOUT_MS",
    "LIMITER_FAILURE_MODE",
    "TRUSTED_PROXIES",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = load_limiter_settings()
    assert settings.limiter_addr == "localhost:50051"
    assert settings.timeout_ms == 50
    assert settings.timeout_s == 0.05
    assert settings.failure_mode is FailureMode.OPEN
    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITER_ADDR", "dns:///limiter:50051")
    monkeypatch.setenv("LIMITER_TIMEOUT_MS", "25")
    monkeypatch.setenv("LIMITER_FAILURE_MODE", "closed")
    monkeypatch.setenv("TRUSTED_PROXIES", " 10.0.0.0/8, 192.168.1.5 ,fd00::1")
    settings = load_limiter_settings()
    assert settings.limiter_addr == "dns:///limiter:50051"
    assert settings.timeout_s == 0.025
    assert settings.failure_mode is FailureMode.CLOSED
    assert [str(n) for n in settings.trusted_proxies] == [
        "10.0.0.0/8",
        "192.168.1.5/32",
        "fd00::1/128",
    ]


def test_empty_trusted_proxies_trusts_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    assert load_limiter_settings().trusted_proxies == ()


def test_windows_are_no_longer_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Deployments may still set them (values once valid or not): the limiter reports each
    # policy's window now, so the API must start and ignore them.
    monkeypatch.setenv("TIME_WINDOW", "0")
    monkeypatch.setenv("LIMITER_POLICY_WINDOWS", "login:300")
    load_limiter_settings()  # no ConfigError
    assert not {"time_window", "policy_windows"} & set(LimiterSettings.model_fields)


def test_keyword_arguments_use_the_env_names() -> None:
    settings = LimiterSettings(LIMITER_ADDR="127.0.0.1:1", LIMITER_TIMEOUT_MS=10)
    assert (settings.limiter_addr, settings.timeout_ms) == ("127.0.0.1:1", 10)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRUSTED_PROXIES", "10.0.0.0/8,nope", "'nope' is not an IP address or CIDR network"),
        ("LIMITER_TIMEOUT_MS", "0", "LIMITER_TIMEOUT_MS"),
        ("LIMITER_FAILURE_MODE", "maybe", "LIMITER_FAILURE_MODE"),
    ],
)
def test_invalid_values_name_the_env_var(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as raised:
        load_limiter_settings()
    assert message in str(raised.value)
