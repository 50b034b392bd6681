"""The Envoy bootstrap as data: routes become ``rate_limits`` descriptors in order, the
filter says what the settings say, hosts given by name are resolved, bad values are refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from devstack.envoy_config import (
    RATE_LIMIT_CLUSTER,
    EdgeSettings,
    GenericKey,
    RemoteAddress,
    RequestHeader,
    Route,
    bootstrap,
    render,
)


def settings(**overrides: Any) -> EdgeSettings:
    values: dict[str, Any] = {
        "listen": ("127.0.0.1", 8080),
        "admin": ("127.0.0.1", 9901),
        "limiters": ["127.0.0.1:50051", "127.0.0.1:50052"],
        "upstreams": ["127.0.0.1:8001"],
        **overrides,
    }
    return EdgeSettings(**values)


def manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def test_two_rate_limits_entries_make_two_descriptors_in_order() -> None:
    route = Route(
        "/two",
        (
            (GenericKey("two", key="route"), RemoteAddress()),
            (RequestHeader("x-user", "user"),),
        ),
    )
    config = bootstrap(settings(routes=(route,)))
    (rendered,) = manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    assert rendered["match"] == {"prefix": "/two"}
    assert rendered["route"]["rate_limits"] == [
        {
            "actions": [
                {"generic_key": {"descriptor_value": "two", "descriptor_key": "route"}},
                {"remote_address": {}},
            ]
        },
        {
            "actions": [
                {
                    "request_headers": {
                        "header_name": "x-user",
                        "descriptor_key": "user",
                        "skip_if_absent": True,
                    }
                }
            ]
        },
    ]


def test_a_route_without_descriptors_is_not_limited() -> None:
    config = bootstrap(settings(routes=(Route("/"),)))
    (rendered,) = manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    assert "rate_limits" not in rendered["route"]


def test_the_apis_hint_to_nginx_never_reaches_clients() -> None:
    # Nginx hides X-Accel-Expires by default; behind Envoy the demo API still sends it.
    route_config = manager(bootstrap(settings()))["route_config"]
    assert route_config["response_headers_to_remove"] == ["x-accel-expires"]


def test_the_filter_carries_domain_failure_mode_timeout_and_headers() -> None:
    config = bootstrap(settings(domain="shop", failure_mode_deny=True, timeout_ms=250))
    first = manager(config)["http_filters"][0]
    assert first["name"] == "envoy.filters.http.ratelimit"
    typed = first["typed_config"]
    assert typed["domain"] == "shop"
    assert typed["failure_mode_deny"] is True
    assert typed["timeout"] == "0.25s"
    assert typed["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03"
    assert typed["rate_limited_as_resource_exhausted"] is False
    grpc = typed["rate_limit_service"]["grpc_service"]
    assert grpc["envoy_grpc"]["cluster_name"] == RATE_LIMIT_CLUSTER


def test_the_limiter_cluster_speaks_http2_round_robin_over_every_replica() -> None:
    config = bootstrap(settings())
    cluster = config["static_resources"]["clusters"][0]
    assert cluster["name"] == RATE_LIMIT_CLUSTER
    assert cluster["type"] == "STATIC"
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    endpoints = [
        entry["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        for entry in cluster["load_assignment"]["endpoints"]
    ]
    assert endpoints == [
        {"address": "127.0.0.1", "port_value": 50051},
        {"address": "127.0.0.1", "port_value": 50052},
    ]
    (options,) = cluster["typed_extension_protocol_options"].values()
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}


def test_names_are_resolved_by_dns() -> None:
    config = bootstrap(settings(limiters=["limiter:50051"], upstreams=["api-1:8000"]))
    assert [c["type"] for c in config["static_resources"]["clusters"]] == ["STRICT_DNS"] * 2


def test_render_is_yaml_of_the_bootstrap_after_the_header() -> None:
    text = render(settings(), "# hello\n")
    assert text.startswith("# hello\n")
    assert yaml.safe_load(text) == bootstrap(settings())


@pytest.mark.parametrize(
    "overrides",
    [
        {"limiters": []},
        {"upstreams": ["no-port"]},
        {"limiters": ["127.0.0.1:70000"]},
        {"domain": ""},
        {"timeout_ms": 0},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        settings(**overrides)
