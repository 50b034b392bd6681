"""Starting Nginx as a real, unprivileged process with its files in one directory."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError
from devstack.nginx_config import TEMPLATE_PATH, local_variables, render
from devstack.processes import ManagedProcess, ProcessGroup
from devstack.waiting import wait_until

__all__ = ["HEALTH_PATH", "NginxNode", "find_nginx", "start_nginx"]

HEALTH_PATH = "/nginx_health"
_CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class NginxNode:
    """A running Nginx: where it listens, its process, and the variables it was rendered
    with (the same names compose sets)."""

    process: ManagedProcess
    host: str
    port: int
    config_path: Path
    variables: Mapping[str, str]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, dict[str, str]]:
        """``GET path`` on a fresh connection: the status and the headers (names
        lower-cased). Raises ``OSError`` or ``http.client.HTTPException`` when Nginx does
        not answer."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status, {name.lower(): value for name, value in response.getheaders()}
        finally:
            connection.close()


def find_nginx() -> str:
    """Path of the ``nginx`` binary (also looked for in ``/usr/sbin``, which is not on every
    user's PATH). Raises ``DevstackError`` if there is none."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise DevstackError("nginx not found on PATH or in /usr/sbin (install the nginx package)")
    return found


def start_nginx(
    group: ProcessGroup,
    name: str,
    *,
    prefix: Path,
    port: int,
    api_servers: tuple[str, str],
    host: str = "127.0.0.1",
    worker_processes: str = "auto",
    timeout: float = 15.0,
) -> NginxNode:
    """Render the template into ``prefix``, check it with ``nginx -t``, start Nginx on
    ``host:port`` in front of ``api_servers`` and return once ``/nginx_health`` answers 200.

    Raises ``DevstackError`` with Nginx's own message when the rendered configuration is
    refused, ``ValueError`` for a value the template cannot take, and the errors of
    ``wait_until`` when it does not come up.
    """
    binary = find_nginx()
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    variables = local_variables(
        listen=f"{host}:{port}",
        api_servers=api_servers,
        prefix=prefix,
        worker_processes=worker_processes,
    )
    config_path = prefix / "nginx.conf"
    config_path.write_text(render(TEMPLATE_PATH.read_text(), variables))
    argv = [binary, "-p", f"{prefix}{os.sep}", "-c", str(config_path), "-e", "stderr"]
    if os.geteuid() == 0:
        # A root master runs its workers as "nobody", who cannot reach the deny cache in a
        # private (0700) temporary directory; locally the workers stay who we are.
        argv += ["-g", "user root;"]
    _check_config(argv)
    process = group.start(name, argv)
    node = NginxNode(process, host, port, config_path, variables)

    wait_until(
        lambda: True if node.get(HEALTH_PATH, timeout=1.0)[0] == 200 else None,
        timeout=timeout,
        waiting_for=f"nginx {name} on {host}:{port} to answer {HEALTH_PATH}",
        retry_on=(OSError, http.client.HTTPException),
        watch=(process,),
    )
    return node


def _check_config(argv: list[str]) -> None:
    result = subprocess.run(
        [*argv, "-t", "-q"],
        capture_output=True,
        text=True,
        timeout=_CHECK_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise DevstackError(f"nginx refused the rendered configuration:\n{result.stderr}")
