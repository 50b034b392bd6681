"""A real Prometheus server (Debian's ``prometheus``) scraping the limiters and the APIs.

``scrape_config`` writes the one configuration both deployments use: ``make stack`` (and
the tests) render it with loopback addresses, ``deploy/prometheus/prometheus.yml`` is the
same text with compose's service names (a test holds the two together). Every target
carries a ``service`` label naming its service (``limiter-1``, ``api-2``), whatever its
address. ``start_prometheus`` runs the server on a free loopback port with its data in
the working directory; it is stopped by PID like every other process.
"""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.waiting import wait_until

__all__ = [
    "DEFAULT_SCRAPE_INTERVAL",
    "PrometheusNode",
    "Targets",
    "find_prometheus",
    "scrape_config",
    "start_prometheus",
]

DEFAULT_SCRAPE_INTERVAL = "5s"
Targets = Mapping[str, Mapping[str, str]]
"""Job name (``limiter``, ``api``) -> service name -> ``host:port`` serving ``/metrics``."""


def scrape_config(targets: Targets, interval: str = DEFAULT_SCRAPE_INTERVAL) -> str:
    """The configuration file: one job per entry of ``targets``, each service a target
    labelled ``service``, scraped every ``interval`` (a Prometheus duration)."""
    lines = [
        "# Written by devstack/prometheus.py (scrape_config); deploy/prometheus/prometheus.yml",
        "# is the same text with compose's service names.",
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        "scrape_configs:",
    ]
    for job, services in targets.items():
        lines += [f"  - job_name: {job}", "    static_configs:"]
        for service, address in services.items():
            lines += [f'      - targets: ["{address}"]', f"        labels: {{service: {service}}}"]
    return "\n".join(lines) + "\n"


def find_prometheus() -> str:
    """Path of the ``prometheus`` binary; raises ``DevstackError`` when there is none."""
    found = shutil.which("prometheus")
    if found is None:
        raise DevstackError("prometheus not found on PATH (install the prometheus package)")
    return found


@dataclass(frozen=True)
class PrometheusNode:
    """A running Prometheus: its process, where it listens and its configuration file."""

    process: ManagedProcess
    host: str
    port: int
    config_path: Path

    @property
    def url(self) -> str:
        """Base URL of its web UI and HTTP API, e.g. ``http://127.0.0.1:9090``."""
        return f"http://{self.host}:{self.port}"

    def api(self, path: str, timeout: float = 5.0, **params: str) -> Any:
        """``GET /api/v1/<path>?params``: the ``data`` of a successful answer. Raises
        ``OSError``/``http.client.HTTPException`` when nothing answers, ``ValueError`` when
        Prometheus reports an error."""
        query = urllib.parse.urlencode(params)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", f"/api/v1/{path}" + (f"?{query}" if query else ""))
            body = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        if body.get("status") != "success":
            raise ValueError(f"prometheus: {path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expression: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query: value by label set (sorted ``(name, value)`` pairs; ``()``
        for a scalar-like single series without labels)."""
        data = self.api("query", query=expression)
        if data["resultType"] == "scalar":
            return {(): float(data["result"][1])}
        return {
            tuple(sorted(item["metric"].items())): float(item["value"][1])
            for item in data["result"]
        }

    def target_health(self) -> dict[str, str]:
        """``health`` (``up``, ``down``, ``unknown``) of every active target, by its
        ``service`` label."""
        targets = self.api("targets", state="active")["activeTargets"]
        return {target["labels"].get("service", ""): target["health"] for target in targets}

    def wait_targets_up(self, timeout: float = 30.0) -> dict[str, str]:
        """Return the targets' health once every one was scraped successfully."""

        def all_up() -> dict[str, str] | None:
            health = self.target_health()
            return health if health and set(health.values()) == {"up"} else None

        return wait_until(
            all_up,
            timeout=timeout,
            waiting_for=f"prometheus on {self.host}:{self.port} to scrape every target",
            retry_on=(OSError, http.client.HTTPException, ValueError),
            watch=(self.process,),
            interval=0.2,
        )


def start_prometheus(
    group: ProcessGroup,
    name: str,
    *,
    workdir: Path,
    port: int,
    targets: Targets,
    host: str = "127.0.0.1",
    scrape_interval: str = DEFAULT_SCRAPE_INTERVAL,
    timeout: float = 30.0,
) -> PrometheusNode:
    """Write ``scrape_config(targets, scrape_interval)`` into ``workdir``, start Prometheus
    on ``host:port`` (its data under ``workdir/data``) and return once it reports itself
    ready (``/-/ready``); its targets may not be scraped yet (``wait_targets_up``).

    Raises ``DevstackError`` when there is no ``prometheus`` binary or it refuses the
    configuration, and the errors of ``wait_until`` when it does not come up.
    """
    binary = find_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(scrape_config(targets, scrape_interval))
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={host}:{port}",
        "--storage.tsdb.retention.time=1d",
    ]
    process = group.start(name, argv)
    node = PrometheusNode(process, host, port, config_path)

    def ready() -> bool | None:
        connection = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            connection.request("GET", "/-/ready")
            return True if connection.getresponse().status == 200 else None
        finally:
            connection.close()

    wait_until(
        ready,
        timeout=timeout,
        waiting_for=f"prometheus {name} on {host}:{port} to be ready",
        retry_on=(OSError, http.client.HTTPException),
        watch=(process,),
        interval=0.1,
    )
    return node
