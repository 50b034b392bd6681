"""The channel to the limiter replicas, shared by the asyncio and the sync client.

The channel balances over every address ``LIMITER_ADDR`` resolves to with ``round_robin``
and retries a call that failed ``UNAVAILABLE`` (a replica died or refused the connection)
on the next replica, so losing one replica loses no request.

With TLS (``LIMITER_TLS*``) the channel verifies the limiter's certificate against
``LIMITER_TLS_CA`` (or the system's roots) and presents the client certificate, if one is
configured. A handshake that fails is ``UNAVAILABLE`` like any unreachable replica; files
that cannot be used raise ``ConfigError`` when the channel is opened.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from ratelimit_client import proto
from ratelimit_client.pem import check_certificates, check_key_pair, read_pem
from ratelimit_client.settings import LimiterSettings

__all__ = [
    "MAX_ATTEMPTS",
    "channel_credentials",
    "channel_options",
    "open_aio_channel",
    "open_sync_channel",
    "service_config",
]

MAX_ATTEMPTS = 3


def service_config() -> dict[str, Any]:
    """round_robin over all resolved addresses; ``UNAVAILABLE`` retried with a short backoff
    (a refused connection fails in microseconds, so three attempts fit any deadline)."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": proto.SERVICE_NAME}],
                "retryPolicy": {
                    "maxAttempts": MAX_ATTEMPTS,
                    "initialBackoff": "0.002s",
                    "maxBackoff": "0.01s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }


def channel_options(settings: LimiterSettings | None = None) -> list[tuple[str, Any]]:
    """Options of the channel to the limiter replicas (``settings``: the TLS server name)."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config())),
        # Our config, not one a DNS TXT record might supply.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.enable_retries", 1),
        # Find a replica that vanished without closing its connections (host lost,
        # network cut); pings only while calls are active, so an idle client never
        # trips the server's ping policy.
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # A restarted replica rejoins the rotation within a second.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1_000),
    ]
    if settings is not None and settings.tls_server_name is not None:
        # The name checked against the certificate and sent as SNI.
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return options


def channel_credentials(settings: LimiterSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials from ``settings``, ``None`` for a plaintext channel.

    Reads the files now; raises ``ConfigError`` naming the env var and file when one is
    unreadable, holds no PEM certificate, or the key does not match the certificate.
    """
    if not settings.uses_tls:
        return None
    root = None
    if settings.tls_ca is not None:
        root = read_pem(settings.tls_ca, "LIMITER_TLS_CA")
        check_certificates(root, settings.tls_ca, "LIMITER_TLS_CA")
    cert = key = None
    if settings.tls_client_cert is not None and settings.tls_client_key is not None:
        cert = read_pem(settings.tls_client_cert, "LIMITER_TLS_CLIENT_CERT")
        key = read_pem(settings.tls_client_key, "LIMITER_TLS_CLIENT_KEY")
        check_certificates(cert, settings.tls_client_cert, "LIMITER_TLS_CLIENT_CERT")
        check_key_pair(settings.tls_client_cert, settings.tls_client_key, "LIMITER_TLS_CLIENT_KEY")
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=cert
    )


def open_aio_channel(settings: LimiterSettings) -> grpc.aio.Channel:
    """The asyncio channel to ``settings.limiter_addr``, TLS when the settings ask for it
    (``ConfigError`` as in ``channel_credentials``). Call inside the running event loop."""
    credentials = channel_credentials(settings)
    options = channel_options(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(settings.limiter_addr, options=options)
    return grpc.aio.secure_channel(settings.limiter_addr, credentials, options=options)


def open_sync_channel(settings: LimiterSettings) -> grpc.Channel:
    """The blocking channel to ``settings.limiter_addr``, as ``open_aio_channel``."""
    credentials = channel_credentials(settings)
    options = channel_options(settings)
    if credentials is None:
        return grpc.insecure_channel(settings.limiter_addr, options=options)
    return grpc.secure_channel(settings.limiter_addr, credentials, options=options)
