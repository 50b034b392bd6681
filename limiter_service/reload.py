"""Live policies: a changed file (watched) or SIGHUP reloads them, all or nothing.

A reload reads and validates the whole file first (``load_policies``), then swaps the
limiter's policy set in one assignment. Decisions already past validation keep the policy
they resolved, so requests in flight finish under the set they started with. An invalid
file keeps the old set; the error names the file, the policy and the field, and is logged
once per distinct error (a broken file being edited is not a log flood).

The watcher compares the file's ``stat`` (inode, size, modification time; symlinks
followed, so a Kubernetes ConfigMap's swapped link counts) every ``interval_s``: a few
syscalls per second, nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from limiter_service.errors import ConfigError
from limiter_service.policies import PolicySet, load_policies

__all__ = ["PolicyReloader"]

log = logging.getLogger(__name__)
Signature = tuple[int, int, int, int] | None


class HoldsPolicies(Protocol):
    """What is reloaded: anything with a ``policies`` attribute (the ``Limiter``)."""

    policies: PolicySet


def _signature(path: Path) -> Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class PolicyReloader:
    """Reloads ``target.policies`` from ``path``; counts ``reloads`` by result
    (``success``, ``error``) and calls ``on_reload(result)`` after each attempt."""

    def __init__(
        self,
        target: HoldsPolicies,
        path: Path,
        *,
        interval_s: float = 1.0,
        load: Callable[[Path], PolicySet] = load_policies,
        on_reload: Callable[[str], None] = lambda result: None,
    ) -> None:
        self._target = target
        self._path = path
        self._interval_s = interval_s
        self._load = load
        self._on_reload = on_reload
        self._seen = _signature(path)
        self._last_error = ""
        self._task: asyncio.Task[None] | None = None
        self.reloads = {"success": 0, "error": 0}

    def reload(self, trigger: str) -> bool:
        """Load and swap now; returns whether the new set is in force."""
        self._seen = _signature(self._path)
        try:
            policies = self._load(self._path)
        except ConfigError as exc:
            self.reloads["error"] += 1
            self._on_reload("error")
            if str(exc) != self._last_error:
                self._last_error = str(exc)
                log.error(
                    "policy reload (%s) refused, keeping the current policies: %s", trigger, exc
                )
            return False
        self._target.policies = policies
        self._last_error = ""
        self.reloads["success"] += 1
        self._on_reload("success")
        log.info(
            "policies reloaded (%s) from %s: %s", trigger, self._path, ", ".join(policies.names)
        )
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if _signature(self._path) != self._seen:
                self.reload("file changed")

    def start(self) -> None:
        """Watch the file (``interval_s`` 0: only SIGHUP reloads)."""
        if self._interval_s > 0:
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
