"""Certificates made at test time with the ``openssl`` command (none is committed).

``CertificateAuthority(directory, "ca")`` creates a self-signed CA; ``issue`` signs a
server or client certificate with a serial of our choosing, so a test can tell which
certificate a server presented (``peer_certificate``).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CertificateAuthority", "Issued", "peer_certificate", "requires_openssl", "serial_of"]

requires_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Issued:
    """A certificate (PEM), its unencrypted key (PEM) and its serial number."""

    cert: Path
    key: Path
    serial: int


class CertificateAuthority:
    """A CA whose key and certificate live in ``directory`` (``<name>.pem``)."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.name = name
        self.cert = directory / f"{name}.pem"
        self.key = directory / f"{name}.key"
        _openssl(
            "req", "-x509", *_KEY, "-keyout", self.key, "-out", self.cert, "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(
        self,
        name: str,
        *,
        client: bool = False,
        names: tuple[str, ...] = ("localhost",),
        loopback_ip: bool = True,
    ) -> Issued:
        """Sign a certificate for ``names`` (DNS) and, with ``loopback_ip``, 127.0.0.1, as a
        server's (or with ``client`` a client's); written to ``<name>.pem`` / ``.key``."""
        cert, key, request = (self.directory / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
        extensions = self.directory / f"{name}.ext"
        alt_names = ",".join([*(f"DNS:{n}" for n in names), *(["IP:127.0.0.1"] * loopback_ip)])
        usage = "clientAuth" if client else "serverAuth"
        extensions.write_text(
            f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName={alt_names}\n"
        )
        serial = secrets.randbits(63) | 1 << 62
        _openssl("req", *_KEY, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.cert, "-CAkey", self.key,
            "-set_serial", str(serial), "-days", "2", "-out", cert, "-extfile", extensions,
        )  # fmt: skip
        return Issued(cert, key, serial)


def peer_certificate(
    host: str, port: int, ca: Path, client: Issued | None = None, server_name: str = "localhost"
) -> dict[str, object]:
    """The certificate a TLS server on ``host:port`` presents to a new connection (the
    ``ssl.SSLSocket.getpeercert()`` dict), verified against ``ca``; ``client`` is
    presented when given. Raises ``ssl.SSLError`` / ``OSError`` when the handshake fails."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])  # what gRPC servers insist on
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with (
        socket.create_connection((host, port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        peer = tls.getpeercert()
    assert peer is not None
    return dict(peer)


def serial_of(peer: dict[str, object]) -> int:
    """The serial number in a ``peer_certificate`` dict."""
    return int(str(peer["serialNumber"]), 16)
