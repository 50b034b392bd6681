"""Compose's Prometheus scrapes both limiters and both API replicas, and sees the traffic
the edge served."""

from __future__ import annotations

import httpx

from devstack import wait_until
from tests.compose.deployment import Deployment
from tests.e2e.edge import client

SCRAPED = {"limiter-1", "limiter-2", "api-1", "api-2"}


def _api(deployment: Deployment, path: str, **params: str) -> object:
    url = f"http://127.0.0.1:{deployment.prometheus_port}/api/v1/{path}"
    with httpx.Client(timeout=5.0) as http:
        body = http.get(url, params=params).json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_every_limiter_and_api(deployment: Deployment) -> None:
    def all_up() -> dict[str, str] | None:
        data = _api(deployment, "targets", state="active")
        assert isinstance(data, dict)
        health = {t["labels"]["service"]: t["health"] for t in data["activeTargets"]}
        return health if set(health) == SCRAPED and set(health.values()) == {"up"} else None

    wait_until(
        all_up,
        timeout=60.0,
        waiting_for="compose's Prometheus to scrape every limiter and API",
        retry_on=(httpx.TransportError,),
        interval=0.5,
    )
    with client() as http:
        for _ in range(3):
            http.get(f"{deployment.url}/limited_endpoint")

    def decided() -> float | None:
        data = _api(deployment, "query", query="sum(ratelimit_decisions_total)")
        assert isinstance(data, dict)
        result = data["result"]
        return float(result[0]["value"][1]) if result and float(result[0]["value"][1]) else None

    assert (
        wait_until(
            decided,
            timeout=60.0,
            waiting_for="Prometheus to see the limiters' decisions",
            retry_on=(httpx.TransportError,),
            interval=0.5,
        )
        >= 3
    )
