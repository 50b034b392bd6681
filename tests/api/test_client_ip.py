"""Whose budget a request is charged to (pure functions, no network)."""

from __future__ import annotations

import ipaddress

import pytest

from ratelimit_client.fastapi.client_ip import TrustedProxies, normalize_ip, resolve_client_ip

LOOPBACK = TrustedProxies([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("203.0.113.7:8080", None),
        ("203.0.113.7, 10.0.0.1", None),
        ("unknown", None),
        ("", None),
    ],
)
def test_normalize_ip(text: str, expected: str | None) -> None:
    assert normalize_ip(text) == expected


def test_trusted_proxies_match_networks_and_cache() -> None:
    assert "127.0.0.1" in LOOPBACK
    assert "127.9.9.9" in LOOPBACK
    assert "::1" in LOOPBACK
    assert "::ffff:127.0.0.1" in LOOPBACK
    assert "10.0.0.1" not in LOOPBACK
    assert "not-an-ip" not in LOOPBACK
    assert LOOPBACK.peer("10.0.0.1") == ("10.0.0.1", False)


def test_x_real_ip_from_a_trusted_peer_names_the_client() -> None:
    assert resolve_client_ip("127.0.0.1", "203.0.113.7", LOOPBACK) == "203.0.113.7"
    assert resolve_client_ip("::1", "2001:db8::7", LOOPBACK) == "2001:db8::7"


def test_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert resolve_client_ip("198.51.100.9", "203.0.113.7", LOOPBACK) == "198.51.100.9"
    assert resolve_client_ip("::ffff:198.51.100.9", None, LOOPBACK) == "198.51.100.9"


def test_trusted_peer_without_a_valid_x_real_ip_is_the_client() -> None:
    assert resolve_client_ip("127.0.0.1", None, LOOPBACK) == "127.0.0.1"
    assert resolve_client_ip("127.0.0.1", "", LOOPBACK) == "127.0.0.1"
    assert resolve_client_ip("127.0.0.1", "203.0.113.7, 10.0.0.1", LOOPBACK) == "127.0.0.1"


def test_nobody_is_trusted_with_an_empty_list() -> None:
    assert resolve_client_ip("127.0.0.1", "203.0.113.7", TrustedProxies([])) == "127.0.0.1"


def test_unix_socket_peer_is_the_proxy() -> None:
    assert resolve_client_ip(None, "203.0.113.7", LOOPBACK) == "203.0.113.7"
    assert resolve_client_ip(None, None, LOOPBACK) == "unknown"


def test_non_ip_peer_shares_the_unknown_budget() -> None:
    assert resolve_client_ip("evil", None, LOOPBACK) == "unknown"
