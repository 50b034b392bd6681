"""TLS and mutual TLS on the gRPC port, with certificates reloaded on SIGHUP.

``LIMITER_TLS_CERT`` and ``LIMITER_TLS_KEY`` (PEM files, both or neither) switch the port to
TLS only; ``LIMITER_TLS_CLIENT_CA`` additionally requires every client to present a
certificate signed by one of the CAs in that file (mutual TLS).

Reloading: ``ServerTls.reload()`` reads the same three files again. gRPC asks
``ServerTls`` for a new certificate configuration before every TLS handshake (from one of
its own threads); the next handshake after a successful reload uses the new files, while
connections already open keep theirs, so nothing is dropped. A reload that fails (a file
unreadable, not PEM, or a key that does not match its certificate) changes nothing: the
old certificate stays in use and the error names the file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from limiter_service.errors import ConfigError
from limiter_service.settings import Settings
from ratelimit_client.pem import check_certificates, check_key_pair, read_pem
from ratelimit_client.settings import ConfigError as ClientConfigError

__all__ = [
    "ServerTls",
    "TlsFiles",
    "check_server_tls",
    "load_configuration",
    "reload_handler",
    "server_tls",
]

log = logging.getLogger("limiter_service.tls")


@dataclass(frozen=True)
class TlsFiles:
    """Where the server's certificate chain, its key and (for mTLS) the client CAs are."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def mode(self) -> str:
        """``"mtls"`` when client certificates are required, else ``"tls"``."""
        return "mtls" if self.client_ca is not None else "tls"


def _files(files: TlsFiles) -> tuple[bytes, bytes, bytes | None]:
    """Certificate, key and client CAs, checked (``ratelimit_client.pem``)."""
    cert = read_pem(files.cert, "LIMITER_TLS_CERT")
    key = read_pem(files.key, "LIMITER_TLS_KEY")
    check_certificates(cert, files.cert, "LIMITER_TLS_CERT")
    check_key_pair(files.cert, files.key, "LIMITER_TLS_KEY")
    client_ca = None
    if files.client_ca is not None:
        client_ca = read_pem(files.client_ca, "LIMITER_TLS_CLIENT_CA")
        check_certificates(client_ca, files.client_ca, "LIMITER_TLS_CLIENT_CA")
    return cert, key, client_ca


def load_configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    """Read and check ``files``; the configuration gRPC serves them with.

    Raises ``ConfigError`` naming the env var and the file at fault.
    """
    try:
        cert, key, client_ca = _files(files)
    except ClientConfigError as exc:
        raise ConfigError(str(exc)) from None
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


class ServerTls:
    """The server's TLS credentials, whose certificates ``reload()`` can replace.

    Raises ``ConfigError`` (naming the env var and file) when ``files`` are unusable.
    """

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._initial = load_configuration(files)
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None

    @property
    def files(self) -> TlsFiles:
        return self._files

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port``; client certificates are required (and
        verified against ``client_ca``) when ``client_ca`` is set."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._next_configuration,
            require_client_authentication=self._files.client_ca is not None,
        )

    def reload(self) -> bool:
        """Read the files again; the next handshakes use them. Returns whether they were
        usable; when not, logs an error naming the file and keeps the current ones."""
        try:
            configuration = load_configuration(self._files)
        except ConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return False
        with self._lock:
            self._pending = configuration
        log.info("TLS certificates reloaded from %s", self._files.cert)
        return True

    def _next_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before each handshake, on its own threads: hand over a reloaded
        # configuration once; None keeps the one in use.
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def server_tls(settings: Settings) -> ServerTls | None:
    """The TLS credentials ``LIMITER_TLS_*`` ask for; ``None`` for a plaintext port.

    Raises ``ConfigError`` naming the env var and file when a file is unusable.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return ServerTls(TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca))


def check_server_tls(settings: Settings) -> None:
    """Check the files ``LIMITER_TLS_*`` name as ``server_tls`` would, building no gRPC
    object (a process that starts workers checks them first); raises ``ConfigError``."""
    if settings.tls_cert is None or settings.tls_key is None:
        return
    try:
        _files(TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca))
    except ClientConfigError as exc:
        raise ConfigError(str(exc)) from None


def reload_handler(tls: ServerTls | None) -> Callable[[], None]:
    """What SIGHUP does: reload the certificates (without TLS there is nothing to reload,
    and the process keeps running rather than dying of the signal's default action)."""

    def reload() -> None:
        if tls is None:
            log.info("SIGHUP: no TLS configured, nothing to reload")
        else:
            tls.reload()

    return reload
