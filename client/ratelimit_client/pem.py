"""Reading and checking the PEM files of a TLS setup, with errors naming the setting.

Shared by the client's channel credentials and the limiter's server certificates: each
function raises ``ConfigError`` whose message starts with the env var at fault and names the
file (unreadable, no PEM certificate in it, a key that is encrypted or does not match).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from ratelimit_client.settings import ConfigError

__all__ = ["check_certificates", "check_key_pair", "read_pem"]


def read_pem(path: Path, variable: str) -> bytes:
    """The bytes of ``path``, the file ``variable`` names."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None


def check_certificates(data: bytes, path: Path, variable: str) -> None:
    """Raise unless ``data`` (read from ``path``) holds at least one PEM certificate."""
    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError) as exc:
        raise ConfigError(f"{variable}: {path} holds no valid PEM certificate ({exc})") from None


def _no_passphrase() -> bytes:
    raise ValueError("encrypted private keys are not supported")


def check_key_pair(cert: Path, key: Path, variable: str) -> None:
    """Raise unless ``key`` (named by ``variable``) is an unencrypted PEM private key for
    the certificate in ``cert``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"{variable}: {key} is not an unencrypted PEM private key matching the "
            f"certificate in {cert} ({exc})"
        ) from None
