"""Policy reloads: all or nothing, errors keep the old set, the watcher sees a changed file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from limiter_service.policies import PolicySet, default_policies
from limiter_service.reload import FileReloader, PolicyReloader


class Target:
    def __init__(self) -> None:
        self.policies: PolicySet = default_policies(10, 60)


def write(path: Path, limit: int) -> None:
    path.write_text(f"policies:\n  default: {{limit: {limit}, window: 60s}}\n")


def test_a_valid_file_replaces_the_whole_set(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    write(path, 5)
    target, results = Target(), list[str]()
    reloader = PolicyReloader(target, path, on_reload=results.append)
    assert reloader.reload("test")
    assert target.policies.resolve("default", "k").limit == 5
    assert reloader.reloads == {"success": 1, "error": 0} and results == ["success"]


def test_an_invalid_file_keeps_the_old_set_and_names_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(
        "policies:\n  default: {limit: 5, window: 60s}\n  login: {limit: 0, window: 1m}\n"
    )
    target = Target()
    before = target.policies
    reloader = PolicyReloader(target, path)
    with caplog.at_level(logging.ERROR):
        assert not reloader.reload("test")
        assert not reloader.reload("test")  # the same error: logged once
    assert target.policies is before
    assert reloader.reloads == {"success": 0, "error": 2}
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(path) in message and "policy 'login'" in message and "field 'limit'" in message


async def test_the_watcher_reloads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    write(path, 5)
    target = Target()
    reloader = PolicyReloader(target, path, interval_s=0.01)
    reloader.start()
    try:
        write(path, 50)
        for _ in range(500):  # a readiness wait: at most 5 s
            if target.policies.resolve("default", "k").limit == 50:
                break
            await asyncio.sleep(0.01)
        assert target.policies.resolve("default", "k").limit == 50
        assert reloader.reloads["success"] == 1
    finally:
        await reloader.stop()


async def test_interval_zero_does_not_watch(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    write(path, 5)
    reloader = PolicyReloader(Target(), path, interval_s=0)
    reloader.start()
    await reloader.stop()
    assert reloader.reloads == {"success": 0, "error": 0}


async def test_a_directory_that_cannot_be_listed_keeps_the_watcher_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory vanishing between ``is_dir`` and ``iterdir`` (an OSError) is "no
    change", logged once; the watcher goes on and sees the next change."""
    source = tmp_path / "envoy"
    source.mkdir()
    (source / "a.yaml").write_text("x: 1\n")
    loaded: list[Path] = []
    reloader = FileReloader(
        source, lambda path: path, loaded.append, what="t", noun="t", interval_s=0.01
    )
    listings = 0
    real_iterdir = Path.iterdir

    def vanished(self: Path) -> Iterator[Path]:
        nonlocal listings
        listings += 1
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(Path, "iterdir", vanished)
    reloader.start()
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(500):  # a readiness wait: at most 5 s
                if listings >= 5:
                    break
                await asyncio.sleep(0.01)
            assert listings >= 5 and reloader._task is not None and not reloader._task.done()
        assert loaded == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "cannot list" in warnings[0]
        monkeypatch.setattr(Path, "iterdir", real_iterdir)
        (source / "b.yaml").write_text("x: 2\n")
        for _ in range(500):
            if loaded:
                break
            await asyncio.sleep(0.01)
        assert loaded == [source]
    finally:
        await reloader.stop()
