"""The client as a user installs it: the built wheel in a fresh venv pulls no server
dependency, and an app built on it passes a test that uses only the testing fake."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
# What only the server needs: none of it may come with the client.
SERVER_ONLY = {
    "redis",
    "pyyaml",
    "pydantic-settings",
    "grpcio-reflection",
    "hiredis",
    "uvicorn",
    # The client's metrics are a hook (ratelimit_client.metrics); Prometheus is an extra.
    "prometheus-client",
}


def run(argv: list[str | Path], cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def top_levels(wheel: Path) -> set[str]:
    """The importable top-level names a wheel installs (its metadata folder aside)."""
    return {name.split("/")[0] for name in names(wheel) if ".dist-info/" not in name}


def build_wheel(project: str, out_dir: Path) -> Path:
    """Build the wheel of ``project`` (a folder of the repo) into ``out_dir``; return it."""
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out_dir, project],
        REPO,
    )
    (wheel,) = out_dir.glob("*.whl")
    return wheel


def test_server_wheel_ships_only_the_service(tmp_path: Path) -> None:
    wheel = build_wheel(".", tmp_path)
    assert wheel.name.startswith("ratelimit_decision_service-")
    assert top_levels(wheel) == {"limiter_service"}
    assert "limiter_service/backends/lua/token_bucket.lua" in names(wheel)
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = archive.read(metadata).decode()
    # The wire contract comes from the client distribution, not a copy.
    assert "Requires-Dist: ratelimit-client==0.1.0" in requires


def test_client_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel = build_wheel("client", tmp_path / "dist")
    assert wheel.name.startswith("ratelimit_client-")
    assert top_levels(wheel) == {"ratelimit_client"}
    assert "ratelimit_client/proto/_gen/ratelimit/v1/ratelimit_pb2_grpc.py" in names(wheel)
    assert "ratelimit_client/py.typed" in names(wheel)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, f"{wheel}[fastapi]"])
    installed = {
        line.split("==")[0].lower()
        for line in run([python, "-m", "pip", "list", "--format=freeze"]).splitlines()
        if "==" in line
    }
    assert {"ratelimit-client", "grpcio", "protobuf", "fastapi"} <= installed
    assert installed & SERVER_ONLY == set()
    # The wheel carries the wire contract and the typing marker, and no other top level.
    contents = run([python, "-c", "import ratelimit_client.proto as p; print(p.SERVICE_NAME)"])
    assert contents.strip() == "ratelimit.v1.RateLimiter"
    # The user's own test tools, then the user's test, run from a copy of the app.
    run([python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, "pytest", "httpx"])
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(HERE / "example_app.py", app_dir / "example_app.py")
    shutil.copy(HERE / "example_checks.py", app_dir / "test_example.py")
    output = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"], app_dir
    )
    assert "2 passed" in output
