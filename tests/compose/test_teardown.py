"""``down -v`` leaves nothing: no container, no network, no volume, no published port.
Runs last (conftest.py orders it so) and takes the session's deployment down.

podman-compose's ``down -v`` removes the volumes the compose file declares, not the
anonymous ones the Redis image's ``VOLUME /data`` gave each Redis and Sentinel container;
those are removed by name, as the README tells podman users to.
"""

from __future__ import annotations

import socket

from tests.compose.deployment import Deployment


def test_down_leaves_no_container_network_or_volume(deployment: Deployment) -> None:
    project = deployment.project
    before = project.leftovers(deployment.anonymous_volumes | project.anonymous_volumes())
    assert len(before.containers) == len(project.containers()) > 0
    assert before.networks, "the project has no network of its own"
    assert len(before.volumes) == 7, f"/data of each Redis and Sentinel, /prometheus: {before}"

    deployment.down()

    left = project.leftovers(before.volumes)
    assert not left, f"left behind: {left}"
    for port in (*deployment.edge_ports, deployment.prometheus_port, deployment.envoy_port):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # OSError while anything still holds it
