"""Tests of free-port discovery."""

from __future__ import annotations

import socket

import pytest

from devstack import free_port, free_ports
from devstack.ports import port_range


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_ports_are_distinct() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(0 < port < 65536 for port in ports)


def test_free_ports_edge_counts() -> None:
    assert free_ports(0) == []
    with pytest.raises(ValueError):
        free_ports(-1)


def test_ports_avoid_the_ephemeral_range_and_never_repeat() -> None:
    ephemeral_start = port_range().stop
    ports = free_ports(50) + [free_port() for _ in range(50)]
    assert len(set(ports)) == 100
    assert all(port < ephemeral_start for port in ports)
