"""Settings from the environment: defaults, parsing, refusals."""

from __future__ import annotations

import pytest

from limiter_service.connections import MIN_CLIENT_PING_INTERVAL_MS, connection_options
from limiter_service.decision import FailureMode
from limiter_service.errors import ConfigError
from limiter_service.settings import BackendKind, load_settings
from ratelimit_client.channel import channel_options

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


ADMISSION_AND_CONNECTION_NAMES = (
    "LIMITER_MAX_RPCS_IN_FLIGHT",
    "LIMITER_MAX_PEER_RPCS_IN_FLIGHT",
    "LIMITER_MAX_DECISIONS_IN_FLIGHT",
    "LIMITER_MAX_PEER_DECISIONS_IN_FLIGHT",
    "LIMITER_KEEPALIVE_TIME_MS",
    "LIMITER_KEEPALIVE_TIMEOUT_MS",
    "LIMITER_MAX_CONNECTION_IDLE_MS",
    "LIMITER_MAX_CONNECTION_AGE_MS",
    "LIMITER_MAX_CONNECTION_AGE_GRACE_MS",
    "LIMITER_MAX_CONCURRENT_STREAMS",
    "LIMITER_MEMORY_TRIM_INTERVAL_S",
)


def test_admission_and_connection_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ADMISSION_AND_CONNECTION_NAMES:
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (
        settings.max_rpcs_in_flight,
        settings.max_peer_rpcs_in_flight,
        settings.max_decisions_in_flight,
        settings.max_peer_decisions_in_flight,
    ) == (2000, 500, 4000, 1000)
    assert dict(connection_options(settings)) == {
        "grpc.max_concurrent_streams": 100,
        "grpc.http.overload_protection": 0,
        "grpc.max_connection_idle_ms": 300_000,
        "grpc.max_connection_age_ms": 300_000,
        "grpc.max_connection_age_grace_ms": 10_000,
        "grpc.keepalive_time_ms": 60_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.min_ping_interval_without_data_ms": 5_000,
    }
    assert settings.memory_trim_interval_s == 10.0


def test_the_server_accepts_the_client_librarys_keepalive_pings() -> None:
    client = dict(channel_options())
    assert client["grpc.keepalive_time_ms"] >= MIN_CLIENT_PING_INTERVAL_MS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIMITER_MAX_RPCS_IN_FLIGHT", "0"),
        ("LIMITER_MAX_PEER_RPCS_IN_FLIGHT", "many"),
        ("LIMITER_MAX_DECISIONS_IN_FLIGHT", "999"),  # a full batch could never be admitted
        ("LIMITER_MAX_PEER_DECISIONS_IN_FLIGHT", "999"),
        ("LIMITER_KEEPALIVE_TIME_MS", "999"),
        ("LIMITER_KEEPALIVE_TIMEOUT_MS", "0"),
        ("LIMITER_MAX_CONNECTION_IDLE_MS", "99"),
        ("LIMITER_MAX_CONNECTION_AGE_MS", "-1"),
        ("LIMITER_MAX_CONNECTION_AGE_GRACE_MS", "3600001"),
        ("LIMITER_MAX_CONCURRENT_STREAMS", "0"),
        ("LIMITER_MEMORY_TRIM_INTERVAL_S", "-1"),
    ],
)
def test_bad_admission_and_connection_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


@pytest.mark.parametrize(
    ("peer", "everyone"),
    [
        ("LIMITER_MAX_PEER_RPCS_IN_FLIGHT", "LIMITER_MAX_RPCS_IN_FLIGHT"),
        ("LIMITER_MAX_PEER_DECISIONS_IN_FLIGHT", "LIMITER_MAX_DECISIONS_IN_FLIGHT"),
    ],
)
def test_one_peer_may_not_have_more_than_everyone(
    monkeypatch: pytest.MonkeyPatch, peer: str, everyone: str
) -> None:
    monkeypatch.setenv(peer, "5000")
    monkeypatch.setenv(everyone, "4000")
    with pytest.raises(ConfigError, match=f"{peer} \\(5000\\) must not exceed {everyone}"):
        load_settings()


def test_the_coalescing_window_is_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIMITER_DECISION_TIMEOUT_MS", raising=False)
    monkeypatch.delenv("LIMITER_COALESCE_WINDOW_US", raising=False)
    assert load_settings().coalesce_window_us == 1000
    monkeypatch.setenv("LIMITER_COALESCE_WINDOW_US", "0")
    assert load_settings().coalesce_window_us == 0
    for bad in ("-1", "10001", "soon"):
        monkeypatch.setenv("LIMITER_COALESCE_WINDOW_US", bad)
        with pytest.raises(ConfigError, match="LIMITER_COALESCE_WINDOW_US"):
            load_settings()
    monkeypatch.setenv("LIMITER_COALESCE_WINDOW_US", "3000")
    monkeypatch.setenv("LIMITER_DECISION_TIMEOUT_MS", "5")
    with pytest.raises(ConfigError, match="at most half of LIMITER_DECISION_TIMEOUT_MS"):
        load_settings()
