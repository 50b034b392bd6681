"""The client library over TLS: ``LIMITER_TLS*`` settings, the asyncio and the sync client
against real TLS and mutual-TLS limiters (certificates made by ``openssl`` for this module),
and files that cannot be used refused with the env var named."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import ProcessGroup, free_port
from devstack.limiter import LimiterNode, start_limiter, wait_limiter
from ratelimit_client import (
    ConfigError,
    LimiterClient,
    LimiterSettings,
    Reason,
    SyncLimiterClient,
)
from ratelimit_client.channel import channel_credentials
from tests.certificates import CertificateAuthority, Issued, requires_openssl

pytestmark = [pytest.mark.integration, requires_openssl]

INTERNAL_NAME = "limiter.internal"


@dataclass(frozen=True)
class TlsLimiters:
    """Limiters on the memory backend, each with a certificate from ``ca``: ``tls``
    (valid for 127.0.0.1), ``mtls`` (also requires a client certificate from ``ca``) and
    ``named`` (valid only for ``INTERNAL_NAME``)."""

    ca: CertificateAuthority
    other_ca: CertificateAuthority
    client: Issued
    stranger: Issued
    tls: LimiterNode
    mtls: LimiterNode
    named: LimiterNode


@pytest.fixture(scope="module")
def limiters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsLimiters]:
    workdir = tmp_path_factory.mktemp("client-tls")
    ca = CertificateAuthority(workdir / "pki", "ca")
    other_ca = CertificateAuthority(workdir / "pki", "other-ca")
    client = ca.issue("api", client=True)
    server = ca.issue("limiter")
    named = ca.issue("named", names=(INTERNAL_NAME,), loopback_ip=False)
    trusting = channel_credentials(_settings("", ca=ca.cert, client=client))

    def env(issued: Issued, client_ca: Path | None = None) -> dict[str, str]:
        values = {"LIMITER_TLS_CERT": str(issued.cert), "LIMITER_TLS_KEY": str(issued.key)}
        return values | ({"LIMITER_TLS_CLIENT_CA": str(client_ca)} if client_ca else {})

    with ProcessGroup(workdir / "logs") as group:
        nodes = [
            start_limiter(
                group,
                name,
                free_port(),
                values,
                wait=False,
                credentials=trusting,
                server_name=server_name,
            )
            for name, values, server_name in (
                ("tls", env(server), None),
                ("mtls", env(server, client_ca=ca.cert), None),
                ("named", env(named), INTERNAL_NAME),
            )
        ]
        for node in nodes:
            wait_limiter(node)
        stranger = other_ca.issue("stranger", client=True)
        yield TlsLimiters(ca, other_ca, client, stranger, *nodes)


def _settings(
    address: str,
    *,
    ca: Path | None = None,
    client: Issued | None = None,
    server_name: str | None = None,
) -> LimiterSettings:
    environ = {"LIMITER_ADDR": address or "127.0.0.1:1", "LIMITER_TIMEOUT_MS": "20000"}
    environ["LIMITER_FAILURE_MODE"] = "closed"
    if ca is not None:
        environ["LIMITER_TLS_CA"] = str(ca)
    if client is not None:
        environ["LIMITER_TLS_CLIENT_CERT"] = str(client.cert)
        environ["LIMITER_TLS_CLIENT_KEY"] = str(client.key)
    if server_name is not None:
        environ["LIMITER_TLS_SERVER_NAME"] = server_name
    return LimiterSettings.from_env(environ)


async def _reasons(settings: LimiterSettings, key: str) -> tuple[Reason, Reason]:
    """The reason of one decision by the asyncio client and one by the sync client."""
    async with LimiterClient(settings) as client:
        asynchronous = (await client.decide(f"{key}:aio")).reason
    with SyncLimiterClient(settings) as sync_client:
        return asynchronous, sync_client.decide(f"{key}:sync").reason


BOTH_DECIDE = (Reason.WITHIN_LIMIT, Reason.WITHIN_LIMIT)
BOTH_REFUSED = (Reason.FAIL_CLOSED, Reason.FAIL_CLOSED)


async def test_both_clients_decide_over_tls_with_limiter_tls_ca(limiters: TlsLimiters) -> None:
    settings = _settings(limiters.tls.address, ca=limiters.ca.cert)
    assert settings.uses_tls
    assert await _reasons(settings, "tls:ca") == BOTH_DECIDE
    async with LimiterClient(settings) as client:
        assert await client.connect(20.0)


async def test_plaintext_or_distrusting_clients_get_the_failure_mode(
    limiters: TlsLimiters,
) -> None:
    plaintext = _settings(limiters.tls.address)
    assert not plaintext.uses_tls
    assert await _reasons(plaintext, "tls:plain") == BOTH_REFUSED
    distrusting = _settings(limiters.tls.address, ca=limiters.other_ca.cert)
    assert await _reasons(distrusting, "tls:other-ca") == BOTH_REFUSED


async def test_client_certificate_for_mutual_tls(limiters: TlsLimiters) -> None:
    address = limiters.mtls.address
    with_cert = _settings(address, ca=limiters.ca.cert, client=limiters.client)
    assert await _reasons(with_cert, "mtls:good") == BOTH_DECIDE
    without = _settings(address, ca=limiters.ca.cert)
    assert await _reasons(without, "mtls:none") == BOTH_REFUSED
    stranger = _settings(address, ca=limiters.ca.cert, client=limiters.stranger)
    assert await _reasons(stranger, "mtls:stranger") == BOTH_REFUSED


async def test_server_name_override(limiters: TlsLimiters) -> None:
    address = limiters.named.address
    named = _settings(address, ca=limiters.ca.cert, server_name=INTERNAL_NAME)
    assert await _reasons(named, "named:right") == BOTH_DECIDE
    assert await _reasons(_settings(address, ca=limiters.ca.cert), "named:ip") == BOTH_REFUSED
    wrong = _settings(address, ca=limiters.ca.cert, server_name="other.internal")
    assert await _reasons(wrong, "named:wrong") == BOTH_REFUSED


def test_tls_settings_from_the_environment(tmp_path: Path) -> None:
    settings = LimiterSettings.from_env(
        {
            "LIMITER_TLS_CA": str(tmp_path / "ca.pem"),
            "LIMITER_TLS_CLIENT_CERT": str(tmp_path / "api.pem"),
            "LIMITER_TLS_CLIENT_KEY": str(tmp_path / "api.key"),
            "LIMITER_TLS_SERVER_NAME": INTERNAL_NAME,
        }
    )
    assert settings.uses_tls and not settings.tls
    assert settings.tls_ca == tmp_path / "ca.pem"
    assert (settings.tls_client_cert, settings.tls_client_key) == (
        tmp_path / "api.pem",
        tmp_path / "api.key",
    )
    assert settings.tls_server_name == INTERNAL_NAME
    system_roots = LimiterSettings.from_env({"LIMITER_TLS": "true"})
    assert system_roots.uses_tls and system_roots.tls_ca is None
    assert channel_credentials(system_roots) is not None
    defaults = LimiterSettings.from_env({"LIMITER_TLS": "", "LIMITER_TLS_CA": " "})
    assert defaults == LimiterSettings() and not defaults.uses_tls
    assert channel_credentials(defaults) is None


@pytest.mark.parametrize(
    ("environ", "variable", "message"),
    [
        ({"LIMITER_TLS": "maybe"}, "LIMITER_TLS", "must be 'true' or 'false'"),
        ({"LIMITER_TLS": "false", "LIMITER_TLS_CA": "ca.pem"}, "LIMITER_TLS", "is set"),
        ({"LIMITER_TLS_CLIENT_CERT": "api.pem"}, "LIMITER_TLS_CLIENT_KEY", "set both"),
        ({"LIMITER_TLS_CLIENT_KEY": "api.key"}, "LIMITER_TLS_CLIENT_CERT", "set both"),
        ({"LIMITER_TLS_SERVER_NAME": "x"}, "LIMITER_TLS_SERVER_NAME", "TLS is off"),
    ],
)
def test_invalid_tls_settings_name_the_env_var(
    environ: Mapping[str, str], variable: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=variable) as raised:
        LimiterSettings.from_env(environ)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("fault", "variable"),
    [
        ("missing CA file", "LIMITER_TLS_CA"),
        ("garbage CA", "LIMITER_TLS_CA"),
        ("garbage client certificate", "LIMITER_TLS_CLIENT_CERT"),
        ("key of another certificate", "LIMITER_TLS_CLIENT_KEY"),
    ],
)
async def test_unusable_tls_files_fail_client_creation_naming_the_env_var(
    limiters: TlsLimiters, tmp_path: Path, fault: str, variable: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    environ = {
        "LIMITER_TLS_CA": str(limiters.ca.cert),
        "LIMITER_TLS_CLIENT_CERT": str(limiters.client.cert),
        "LIMITER_TLS_CLIENT_KEY": str(limiters.client.key),
    }
    if fault == "missing CA file":
        environ["LIMITER_TLS_CA"] = str(tmp_path / "missing.pem")
    elif fault == "garbage CA":
        environ["LIMITER_TLS_CA"] = str(garbage)
    elif fault == "garbage client certificate":
        environ["LIMITER_TLS_CLIENT_CERT"] = str(garbage)
    else:
        environ["LIMITER_TLS_CLIENT_KEY"] = str(limiters.stranger.key)
    settings = LimiterSettings.from_env(environ)
    with pytest.raises(ConfigError, match=variable) as raised:
        SyncLimiterClient(settings)
    assert Path(environ[variable]).name in str(raised.value)
    with pytest.raises(ConfigError, match=variable):
        LimiterClient(settings)
