"""Settings of the cluster backend: REDIS_CLUSTER_NODES parsed like SENTINEL_HOSTS, and
LIMITER_BACKEND=cluster refused without it, naming the variable."""

from __future__ import annotations

import pytest

from limiter_service.backends.cluster import ClusterBackend
from limiter_service.errors import ConfigError
from limiter_service.server import build_backend
from limiter_service.settings import BackendKind, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIMITER_BACKEND", "SENTINEL_HOSTS", "REDIS_URL", "REDIS_CLUSTER_NODES"):
        monkeypatch.delenv(name, raising=False)


async def test_cluster_nodes_select_the_cluster_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "node-1:7000, 10.0.0.2:7001,[::1]:7002")
    settings = load_settings()
    assert settings.resolved_backend() is BackendKind.CLUSTER
    assert settings.redis_cluster_nodes == [("node-1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    backend = build_backend(settings)
    assert isinstance(backend, ClusterBackend)
    assert backend.description == "redis cluster node-1:7000,10.0.0.2:7001,::1:7002"
    await backend.close()


def test_sentinel_hosts_still_win_in_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "node-1:7000")
    monkeypatch.setenv("SENTINEL_HOSTS", "sentinel-1:26379")
    assert load_settings().resolved_backend() is BackendKind.SENTINEL


def test_a_bad_node_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "node-1:7000,node-2")
    with pytest.raises(ConfigError, match=r"REDIS_CLUSTER_NODES.*'node-2' is not host:port"):
        load_settings()


def test_the_cluster_backend_needs_its_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITER_BACKEND", "cluster")
    with pytest.raises(ConfigError, match="LIMITER_BACKEND=cluster needs REDIS_CLUSTER_NODES"):
        load_settings()
