"""Live policy reload in a real limiter: under continuous load, by file change and SIGHUP;
an invalid file keeps the old policies; ``check-config`` validates as a reload does."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from devstack import ProcessGroup, free_port, wait_until
from devstack.limiter import LimiterNode, start_limiter
from tests.integration.client import LimiterClient

pytestmark = pytest.mark.integration


def write(path: Path, limit: int) -> None:
    """Replace the file atomically, as a deploy (or a ConfigMap update) does."""
    staged = path.with_suffix(".tmp")
    staged.write_text(f"policies:\n  default: {{limit: {limit}, window: 1h}}\n")
    os.replace(staged, path)


def start(processes: ProcessGroup, path: Path, watch_ms: int) -> LimiterNode:
    env = {"LIMITER_POLICIES": str(path), "LIMITER_POLICIES_WATCH_MS": str(watch_ms)}
    return start_limiter(processes, "limiter", free_port(), env)


async def limit_seen(client: LimiterClient) -> int:
    return int((await client.should_allow(f"probe:{uuid.uuid4()}", dry_run=True)).limit)


async def wait_seen(seen: Callable[[], Awaitable[int]], limit: int) -> None:
    """Wait (up to ~10 s) until ``seen()`` reports ``limit``: a reload has taken effect."""
    for _ in range(200):  # a readiness wait: at most ~10 s
        if await seen() == limit:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the limiter never applied limit {limit}")


async def wait_limit(client: LimiterClient, limit: int) -> None:
    await wait_seen(functools.partial(limit_seen, client), limit)


async def wait_logged(node: LimiterNode, text: str) -> None:
    """Wait (up to 10 s) until ``text`` is in the last 200 lines of ``node``'s log."""
    await asyncio.to_thread(
        wait_until,
        lambda: True if text in node.process.log_tail(200) else None,
        timeout=10.0,
        waiting_for=f"{text!r} to be logged",
    )


async def test_file_change_under_load_zero_errors(processes: ProcessGroup, tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    write(path, 5)
    node = start(processes, path, watch_ms=100)
    client = LimiterClient(node.address)
    errors: list[str] = []
    limits: set[int] = set()
    stopping = asyncio.Event()

    async def load(worker: int) -> None:
        n = 0
        while not stopping.is_set():
            n += 1
            try:
                reply = await client.should_allow(f"load:{worker}:{n}", timeout=5)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code()}: {exc.details()}")
            else:
                limits.add(int(reply.limit))

    workers = [asyncio.ensure_future(load(i)) for i in range(8)]
    try:
        await wait_limit(client, 5)
        write(path, 50)
        await wait_limit(client, 50)
        path.write_text("policies:\n  default: {limit: 0, window: 1h}\n")  # invalid
        await wait_logged(node, "policy reload (file changed) refused")
        assert await limit_seen(client) == 50  # the old set is still in force
    finally:
        stopping.set()
        await asyncio.gather(*workers)
        await client.close()
    assert errors == []
    assert limits == {5, 50}
    log = node.process.log_tail(200)
    assert f"{path}: policy 'default': field 'limit'" in log


async def test_sighup_reloads(processes: ProcessGroup, tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    write(path, 5)
    node = start(processes, path, watch_ms=0)  # no watcher: only the signal reloads
    client = LimiterClient(node.address)
    try:
        write(path, 7)
        assert await limit_seen(client) == 5
        node.process.signal(signal.SIGHUP)
        await wait_limit(client, 7)
    finally:
        await client.close()
    assert "policies reloaded (SIGHUP)" in node.process.log_tail(200)
    assert node.process.is_running()


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("policies:\n  default: {limit: 5, window: 1s}\n", 0, "ok: "),
        ("policies:\n  default: {limit: 5, window: 1w}\n", 2, "policy 'default': field 'window'"),
        ("policies: [\n", 2, "not valid YAML"),
    ],
)
def test_check_config_exit_codes(tmp_path: Path, text: str, code: int, expected: str) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "limiter_service", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
