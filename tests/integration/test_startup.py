"""Start-up: invalid configuration stops the process with exit code 2 and a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import free_port

pytestmark = pytest.mark.integration


def run_service(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limiter_service"],
        env={**os.environ, "LIMITER_LISTEN": f"127.0.0.1:{free_port()}", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_invalid_policies_file_names_file_policy_and_field(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(
        "policies:\n  default: {limit: 10, window: 60s}\n  login: {limit: -1, window: 1m}\n"
    )
    result = run_service({"LIMITER_POLICIES": str(path)})
    assert result.returncode == 2
    assert f"{path}: policy 'login': field 'limit'" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_variable() -> None:
    result = run_service({"LIMITER_FAILURE_MODE": "sometimes"})
    assert result.returncode == 2
    assert "LIMITER_FAILURE_MODE" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_is_installed() -> None:
    script = shutil.which("limiter-service", path=str(Path(sys.executable).parent))
    assert script is not None, "the limiter-service console script is not installed"
    result = subprocess.run(
        [script],
        env={**os.environ, "LIMITER_LISTEN": "not an address"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "LIMITER_LISTEN" in result.stderr
