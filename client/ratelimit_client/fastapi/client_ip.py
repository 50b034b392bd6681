"""Whose address a request is charged to: the peer, or ``X-Real-IP`` from a trusted proxy.

The rule, and the only one: ``X-Real-IP`` names the client when, and only when, the TCP
peer is a trusted proxy (``TRUSTED_PROXIES``; our Nginx overwrites that header with
``$remote_addr``). Otherwise the peer address is the client and every header is ignored.
``X-Forwarded-For`` and ``Forwarded`` are never read: clients can append to them through a
proxy, so they cannot decide whose budget is charged.

Addresses are normalised (IPv4-mapped IPv6 becomes IPv4, IPv6 is compressed) so one client
has one budget however its address is spelled. A request without a peer address (a Unix
socket, reachable only by local processes such as the proxy) counts as from a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ratelimit_client.settings import IPNetwork

__all__ = ["UNKNOWN_CLIENT", "TrustedProxies", "normalize_ip", "resolve_client_ip"]

UNKNOWN_CLIENT = "unknown"
_MAX_CACHED = 4096


def normalize_ip(text: str) -> str | None:
    """The canonical spelling of an IP address, or ``None`` if ``text`` is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class TrustedProxies:
    """A set of networks; answers "is this peer a trusted proxy?" with a bounded cache,
    since the same few peers (the proxies) ask on every request."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        self._peers: dict[str, tuple[str | None, bool]] = {}

    def peer(self, host: str) -> tuple[str | None, bool]:
        """``(normalised address or None if not an IP, whether it is trusted)``."""
        known = self._peers.get(host)
        if known is None:
            address = normalize_ip(host)
            trusted = address is not None and any(
                ipaddress.ip_address(address) in network for network in self.networks
            )
            if len(self._peers) >= _MAX_CACHED:
                self._peers.clear()
            known = self._peers[host] = (address, trusted)
        return known

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and self.peer(host)[1]


def resolve_client_ip(peer: str | None, real_ip: str | None, trusted: TrustedProxies) -> str:
    """The client's address for rate limiting.

    ``peer`` is the TCP peer's host (``None`` when unknown, e.g. a Unix socket) and
    ``real_ip`` the ``X-Real-IP`` header (``None`` if absent). Returns ``real_ip``
    (normalised) when the peer is trusted and ``real_ip`` is a valid address; otherwise the
    peer's address; ``"unknown"`` when neither is an IP address (such requests share one
    budget: an unidentifiable client is limited, never exempt).
    """
    if peer is None:
        address, is_trusted = None, True
    else:
        address, is_trusted = trusted.peer(peer)
    if is_trusted and real_ip:
        forwarded = normalize_ip(real_ip)
        if forwarded is not None:
            return forwarded
    return address if address is not None else UNKNOWN_CLIENT
