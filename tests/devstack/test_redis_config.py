"""Tests of the rendered Redis and Sentinel configuration files."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.redis_config import data_node_config, quote_path, sentinel_config


def test_replica_config_authenticates_both_ways_and_persists_counters() -> None:
    lines = data_node_config(
        port=7001, directory=Path("/tmp/n1"), password="pw", replica_of=("127.0.0.1", 7000)
    ).splitlines()
    for expected in (
        "port 7001",
        "bind 127.0.0.1",
        'dir "/tmp/n1"',
        'save ""',
        "appendonly yes",
        "appendfsync everysec",
        "min-replicas-to-write 1",
        "min-replicas-max-lag 2",
        "requirepass pw",
        "masterauth pw",
        "replicaof 127.0.0.1 7000",
    ):
        assert expected in lines


def test_master_config_follows_no_one() -> None:
    text = data_node_config(port=7000, directory=Path("/tmp/n0"), password="pw", replica_of=None)
    assert "replicaof" not in text


def test_sentinel_config_monitors_the_master_with_given_timings() -> None:
    text = sentinel_config(
        port=26379,
        directory=Path("/tmp/s1"),
        master_name="mymaster",
        master_address=("127.0.0.1", 7000),
        password="pw",
        down_after_ms=1000,
        failover_timeout_ms=5000,
    )
    lines = text.splitlines()
    assert lines.index("sentinel monitor mymaster 127.0.0.1 7000 2") < lines.index(
        "sentinel auth-pass mymaster pw"
    )
    assert "sentinel down-after-milliseconds mymaster 1000" in lines
    assert "sentinel failover-timeout mymaster 5000" in lines
    assert "sentinel parallel-syncs mymaster 1" in lines
    assert "requirepass" not in text


def test_sentinel_password_becomes_requirepass() -> None:
    text = sentinel_config(
        port=26379,
        directory=Path("/tmp/s1"),
        master_name="mymaster",
        master_address=("127.0.0.1", 7000),
        password="pw",
        down_after_ms=1000,
        failover_timeout_ms=5000,
        sentinel_password="spw",
    )
    assert "requirepass spw" in text.splitlines()


@pytest.mark.parametrize("password", ["", "has space", 'quo"te', "new\nline"])
def test_unsafe_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValueError):
        data_node_config(port=1, directory=Path("/tmp"), password=password, replica_of=None)


def test_unsafe_paths_are_refused() -> None:
    with pytest.raises(ValueError):
        quote_path(Path('/tmp/a"b'))
