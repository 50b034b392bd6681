"""TLS settings of the server and its certificate files: what is accepted, what is refused
(naming the env var and the file), and that a failed reload keeps what is in use. The
certificates are made by ``openssl`` for each test; no network."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from limiter_service.errors import ConfigError
from limiter_service.settings import load_settings
from limiter_service.tls import ServerTls, TlsFiles, load_configuration, server_tls
from tests.certificates import CertificateAuthority, Issued, requires_openssl

TLS_ENV = ("LIMITER_TLS_CERT", "LIMITER_TLS_KEY", "LIMITER_TLS_CLIENT_CA", "LIMITER_REFLECTION")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*TLS_ENV, "LIMITER_BACKEND", "REDIS_URL", "SENTINEL_HOSTS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_plaintext_with_reflection() -> None:
    settings = load_settings()
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (None, None, None)
    assert settings.reflection is True
    assert server_tls(settings) is None


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("0", False), ("true", True)])
def test_reflection_switch(monkeypatch: pytest.MonkeyPatch, text: str, expected: bool) -> None:
    monkeypatch.setenv("LIMITER_REFLECTION", text)
    assert load_settings().reflection is expected


def test_tls_paths_are_read_and_empty_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITER_TLS_CERT", "/etc/limiter/tls.crt")
    monkeypatch.setenv("LIMITER_TLS_KEY", "/etc/limiter/tls.key")
    monkeypatch.setenv("LIMITER_TLS_CLIENT_CA", "")
    settings = load_settings()
    assert settings.tls_cert == Path("/etc/limiter/tls.crt")
    assert settings.tls_key == Path("/etc/limiter/tls.key")
    assert settings.tls_client_ca is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIMITER_TLS_CERT": "c.pem"}, "LIMITER_TLS_CERT and LIMITER_TLS_KEY"),
        ({"LIMITER_TLS_KEY": "k.pem"}, "LIMITER_TLS_CERT and LIMITER_TLS_KEY"),
        ({"LIMITER_TLS_CLIENT_CA": "ca.pem"}, "LIMITER_TLS_CLIENT_CA needs"),
        ({"LIMITER_REFLECTION": "sometimes"}, "LIMITER_REFLECTION"),
    ],
)
def test_incomplete_or_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki", "ca")


@pytest.fixture
def server(ca: CertificateAuthority) -> Issued:
    return ca.issue("limiter")


@requires_openssl
def test_usable_files_load(ca: CertificateAuthority, server: Issued) -> None:
    assert load_configuration(TlsFiles(server.cert, server.key)) is not None
    files = TlsFiles(server.cert, server.key, ca.cert)
    assert files.mode == "mtls" and TlsFiles(server.cert, server.key).mode == "tls"
    ServerTls(files).credentials()


@requires_openssl
@pytest.mark.parametrize(
    ("fault", "variable"),
    [
        ("missing certificate", "LIMITER_TLS_CERT"),
        ("certificate is a key", "LIMITER_TLS_CERT"),
        ("missing key", "LIMITER_TLS_KEY"),
        ("key is a certificate", "LIMITER_TLS_KEY"),
        ("key of another certificate", "LIMITER_TLS_KEY"),
        ("encrypted key", "LIMITER_TLS_KEY"),
        ("client CA not PEM", "LIMITER_TLS_CLIENT_CA"),
    ],
)
def test_unusable_files_name_the_variable_and_the_file(
    ca: CertificateAuthority, server: Issued, tmp_path: Path, fault: str, variable: str
) -> None:
    cert, key, client_ca = server.cert, server.key, ca.cert
    if fault == "missing certificate":
        cert = tmp_path / "missing.pem"
    elif fault == "certificate is a key":
        cert = server.key
    elif fault == "missing key":
        key = tmp_path / "missing.key"
    elif fault == "key is a certificate":
        key = server.cert
    elif fault == "key of another certificate":
        key = ca.issue("other").key
    elif fault == "encrypted key":
        key = tmp_path / "encrypted.key"
        _encrypt(server.key, key)
    else:
        client_ca = tmp_path / "binary.pem"
        client_ca.write_bytes(b"\xff\xfe not PEM")
    blamed = {"LIMITER_TLS_CERT": cert, "LIMITER_TLS_KEY": key}.get(variable, client_ca)
    with pytest.raises(ConfigError, match=variable) as raised:
        load_configuration(TlsFiles(cert, key, client_ca))
    assert str(blamed) in str(raised.value)


def _encrypt(source: Path, target: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(source),
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            str(target),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


@requires_openssl
def test_failed_reload_keeps_the_current_files_and_logs_the_file(
    server: Issued, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(server.cert.read_bytes())
    key.write_bytes(server.key.read_bytes())
    tls = ServerTls(TlsFiles(cert, key))
    cert.write_text("garbage\n")
    with caplog.at_level(logging.ERROR, logger="limiter_service.tls"):
        assert tls.reload() is False
    assert str(cert) in caplog.text and "LIMITER_TLS_CERT" in caplog.text
    cert.write_bytes(server.cert.read_bytes())
    assert tls.reload() is True
