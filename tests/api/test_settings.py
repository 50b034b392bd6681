"""Client settings: defaults, env parsing, validation on construction, and errors that name
the env var."""

from __future__ import annotations

import ipaddress

import pytest

from ratelimit_client import ConfigError, FailureMode, LimiterSettings, load_limiter_settings

ENV_VARS = (
    "LIMITER_ADDR",
    "LIMITER_TIMEOUT_MS",
    "LIMITER_MAX_IN_FLIGHT",
    "LIMITER_FAILURE_MODE",
    "TRUSTED_PROXIES",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = load_limiter_settings()
    assert settings == LimiterSettings() == LimiterSettings.from_env({})
    assert settings.limiter_addr == "localhost:50051"
    assert settings.timeout_ms == 50
    assert settings.timeout_s == 0.05
    assert settings.max_in_flight == 1
    assert settings.failure_mode is FailureMode.OPEN
    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITER_ADDR", "dns:///limiter:50051")
    monkeypatch.setenv("LIMITER_TIMEOUT_MS", "25")
    monkeypatch.setenv("LIMITER_MAX_IN_FLIGHT", "4")
    monkeypatch.setenv("LIMITER_FAILURE_MODE", "closed")
    monkeypatch.setenv("TRUSTED_PROXIES", " 10.0.0.0/8, 192.168.1.5 ,fd00::1")
    settings = load_limiter_settings()
    assert settings.limiter_addr == "dns:///limiter:50051"
    assert settings.timeout_s == 0.025
    assert settings.max_in_flight == 4
    assert settings.failure_mode is FailureMode.CLOSED
    assert [str(n) for n in settings.trusted_proxies] == [
        "10.0.0.0/8",
        "192.168.1.5/32",
        "fd00::1/128",
    ]


def test_from_env_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITER_ADDR", "from-the-process:1")
    settings = LimiterSettings.from_env({"LIMITER_ADDR": "127.0.0.1:9", "LIMITER_TIMEOUT_MS": "7"})
    assert (settings.limiter_addr, settings.timeout_ms) == ("127.0.0.1:9", 7)


def test_empty_trusted_proxies_trusts_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    assert load_limiter_settings().trusted_proxies == ()


def test_keyword_arguments_are_the_field_names_and_are_validated() -> None:
    settings = LimiterSettings(limiter_addr="127.0.0.1:1", timeout_ms=10)
    assert (settings.limiter_addr, settings.timeout_ms) == ("127.0.0.1:1", 10)
    with pytest.raises(ConfigError, match="LIMITER_TIMEOUT_MS"):
        LimiterSettings(timeout_ms=0)
    with pytest.raises(ConfigError, match="LIMITER_ADDR"):
        LimiterSettings(limiter_addr="")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRUSTED_PROXIES", "10.0.0.0/8,nope", "'nope' is not an IP address or CIDR network"),
        ("LIMITER_TIMEOUT_MS", "0", "must be between 1 and 60000, got 0"),
        ("LIMITER_TIMEOUT_MS", "soon", "'soon' is not an integer"),
        ("LIMITER_MAX_IN_FLIGHT", "0", "must be between 1 and 1024, got 0"),
        ("LIMITER_FAILURE_MODE", "maybe", "must be 'open' or 'closed', got 'maybe'"),
        ("LIMITER_ADDR", " ", "must not be empty"),
    ],
)
def test_invalid_values_name_the_env_var(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as raised:
        load_limiter_settings()
    assert message in str(raised.value)
