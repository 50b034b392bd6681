"""The compose tests run only under ``make compose-test`` (``COMPOSE_TEST=1``), which
installs podman and podman-compose, points podman at a store of its own holding the
stand-in base images, and fills a wheelhouse; elsewhere they are skipped.

One deployment for the session: the images are built once, the project is brought up
once; ``test_teardown.py`` runs last and takes it down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.deployment import Deployment, StackSettings, deployed
from tests.compose.engine import Podman, build_images, build_specs
from tests.e2e.compose import COMPOSE_FILE, load_compose

ENABLED = os.environ.get("COMPOSE_TEST") == "1"
_HERE = Path(__file__).resolve().parent
_LAST = _HERE / "test_teardown.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [item for item in items if _HERE in item.path.parents]
    if not ENABLED:
        skip = pytest.mark.skip(reason="make compose-test runs these (podman, stand-in images)")
        for item in ours:
            item.add_marker(skip)
    items[:] = [item for item in items if item.path != _LAST] + [
        item for item in items if item.path == _LAST
    ]


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests with make compose-test")
    return value


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Engine commands and container output: COMPOSE_TEST_LOGS, else a temporary dir."""
    configured = os.environ.get("COMPOSE_TEST_LOGS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("compose")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def engine(log_dir: Path) -> Podman:
    return Podman(log_dir / "engine.log")


@pytest.fixture(scope="session")
def images(engine: Podman) -> dict[str, str]:
    """Build the compose file's images; service name -> image, for services that build."""
    wheelhouse = os.environ.get("COMPOSE_TEST_WHEELHOUSE")
    compose = load_compose()
    build_images(
        engine, build_specs(compose, COMPOSE_FILE), Path(wheelhouse) if wheelhouse else None
    )
    return {
        name: service["image"]
        for name, service in compose["services"].items()
        if "build" in service
    }


@pytest.fixture(scope="session")
def deployment(engine: Podman, images: dict[str, str], log_dir: Path) -> Iterator[Deployment]:
    podman_compose = _required("PODMAN_COMPOSE")
    with deployed(engine, podman_compose, log_dir, StackSettings()) as running:
        yield running
