"""Choosing the stack's edge: ``--edge`` / ``STACK_EDGE``, the services each edge runs, and
what Envoy is rendered with (pure data, no process)."""

from __future__ import annotations

import pytest

from devstack.__main__ import _config, parse_args
from devstack.envoy_config import RemoteAddress
from devstack.stack_config import (
    ENVOY_SERVICE,
    NGINX_SERVICE,
    SERVICES,
    StackConfig,
    edge_settings,
    services,
)


def test_nginx_is_the_default_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACK_EDGE", raising=False)
    assert _config(parse_args([])).edge == NGINX_SERVICE


def test_edge_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(parse_args(["--edge", "envoy", "--envoy-admin-port", "9911"]))
    assert (config.edge, config.envoy_admin_port) == (ENVOY_SERVICE, 9911)
    monkeypatch.setenv("STACK_EDGE", "envoy")
    assert _config(parse_args([])).edge == ENVOY_SERVICE


def test_an_unknown_edge_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--edge", "haproxy"])
    assert "invalid choice: 'haproxy'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="edge must be one of"):
        StackConfig(edge="haproxy")


def test_envoy_takes_nginx_s_place_in_the_services() -> None:
    assert services(NGINX_SERVICE) == SERVICES
    envoy = services(ENVOY_SERVICE)
    assert NGINX_SERVICE not in envoy
    assert envoy.index(ENVOY_SERVICE) == SERVICES.index(NGINX_SERVICE)


def test_envoy_limits_the_limited_endpoint_by_client_address() -> None:
    config = StackConfig(limiter_ports=(1, 2), failure_mode="closed").with_ports_chosen()
    settings = edge_settings(config, ("127.0.0.1:3", "127.0.0.1:4"))
    assert settings.listen == (config.host, config.nginx_port)
    assert settings.limiters == ["127.0.0.1:1", "127.0.0.1:2"]
    assert settings.failure_mode_deny is True
    limited, rest = settings.routes
    assert (limited.prefix, limited.descriptors) == ("/limited_endpoint", ((RemoteAddress(),),))
    assert (rest.prefix, rest.descriptors) == ("/", ())
