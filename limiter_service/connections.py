"""Connection hygiene: what bounds a client connection's lifetime and its streams.

A stream that opened but never sent its request holds server memory (a call and the task
waiting for its message) until the stream or the connection ends; nothing in gRPC times it
out on the server's side. What bounds it:

- ``max_concurrent_streams`` caps the streams of one connection (advertised in SETTINGS;
  streams beyond it are refused with ``REFUSED_STREAM``, and a client far beyond it loses
  its connection), so one connection cannot hold more than that many;
- ``max_connection_age_ms`` + ``max_connection_age_grace_ms`` bound how long: at the age
  (give or take gRPC's 10 % jitter) the server sends GOAWAY, in-flight calls get the
  grace to finish, then the connection is closed and every stream on it released;
- ``max_connection_idle_ms`` closes connections without calls, and keepalive pings
  (``keepalive_time_ms``, ``keepalive_timeout_ms``) close connections whose client
  vanished without closing them.

The client library pings every 10 s while it has calls in flight; the ping policy below
accepts pings every 5 s, with or without calls, so no well-behaved client is sent
``GOAWAY too_many_pings``. Clients reconnect transparently after a GOAWAY.
"""

from __future__ import annotations

from typing import Any

from limiter_service.settings import Settings

__all__ = ["MIN_CLIENT_PING_INTERVAL_MS", "connection_options"]

MIN_CLIENT_PING_INTERVAL_MS = 5_000
"""Shortest interval between a client's pings that the server accepts (the client library's
is 10 s)."""


def connection_options(settings: Settings) -> list[tuple[str, Any]]:
    """gRPC server channel args for the connection limits in ``settings``."""
    return [
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        # With gRPC's "overload protection" a stream keeps counting against the limit
        # until the server has freed its call; a client's first burst on a new connection
        # (sent before it knew the limit) was then refused: 800 of 1,000 UNAVAILABLE.
        # Without it the burst is queued, and silent streams are held to the limit alike.
        ("grpc.http.overload_protection", 0),
        ("grpc.max_connection_idle_ms", settings.max_connection_idle_ms),
        ("grpc.max_connection_age_ms", settings.max_connection_age_ms),
        ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_ms),
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
    ]
