"""Live configuration: a changed file (watched) or SIGHUP reloads it, all or nothing.

Two sources reload this way, each with its own ``FileReloader``: the policies file
(``LIMITER_POLICIES``, ``PolicyReloader``) and the Envoy configuration
(``LIMITER_ENVOY_CONFIG``, a file or a directory of them). A reload reads and validates the
whole source first, then swaps it in with one assignment. Decisions already past
validation keep what they resolved, so requests in flight finish under the configuration
they started with. An invalid source keeps the old configuration; the error names the
file and the field, and is logged once per distinct error (a broken file being edited is
not a log flood).

The watcher compares the source's ``stat`` (inode, size, modification time; symlinks
followed, so a Kubernetes ConfigMap's swapped link counts; for a directory, every
``*.yaml``/``*.yml`` file in it) every ``interval_s``: a few syscalls per second, nothing
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from limiter_service.errors import ConfigError
from limiter_service.policies import PolicySet, load_policies

__all__ = ["FileReloader", "PolicyReloader"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Stat = tuple[int, int, int, int] | None
Signature = tuple[tuple[str, Stat], ...]


class HoldsPolicies(Protocol):
    """What is reloaded: anything with a ``policies`` attribute (the ``Limiter``)."""

    policies: PolicySet


def _stat(path: Path) -> Stat:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _signature(path: Path) -> Signature:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        return tuple((p.name, _stat(p)) for p in files)
    return (("", _stat(path)),)


class FileReloader(Generic[T]):
    """Reloads what ``load(path)`` returns and hands it to ``apply``; counts ``reloads``
    by result (``success``, ``error``) and calls ``on_reload(result)`` after each attempt.
    ``what`` and ``noun`` name the source in the log ("policy reload ... refused, keeping
    the current policies", "policies reloaded"); ``describe`` says what a new value holds."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        apply: Callable[[T], None],
        *,
        what: str,
        noun: str,
        describe: Callable[[T], str] = lambda value: "",
        interval_s: float = 1.0,
        on_reload: Callable[[str], None] = lambda result: None,
    ) -> None:
        self._path = path
        self._load = load
        self._apply = apply
        self._what = what
        self._noun = noun
        self._describe = describe
        self._interval_s = interval_s
        self._on_reload = on_reload
        self._unlisted = False
        self._seen: Signature = ()
        self._seen = self._signature()
        self._last_error = ""
        self._task: asyncio.Task[None] | None = None
        self.reloads = {"success": 0, "error": 0}

    def reload(self, trigger: str) -> bool:
        """Load and swap now; returns whether the new value is in force."""
        self._seen = self._signature()
        try:
            value = self._load(self._path)
        except ConfigError as exc:
            self.reloads["error"] += 1
            self._on_reload("error")
            if str(exc) != self._last_error:
                self._last_error = str(exc)
                log.error(
                    "%s reload (%s) refused, keeping the current %s: %s",
                    self._what,
                    trigger,
                    self._noun,
                    exc,
                )
            return False
        self._apply(value)
        self._last_error = ""
        self.reloads["success"] += 1
        self._on_reload("success")
        log.info(
            "%s reloaded (%s) from %s: %s", self._noun, trigger, self._path, self._describe(value)
        )
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if self._signature() != self._seen:
                self.reload("file changed")

    def _signature(self) -> Signature:
        """The source's signature; the last one seen when it cannot be read (a directory
        removed between ``is_dir`` and its listing), logged once until it can be again."""
        try:
            signature = _signature(self._path)
        except OSError as exc:
            if not self._unlisted:
                self._unlisted = True
                log.warning(
                    "%s: cannot list %s (%s); keeping the current %s until it can be",
                    self._what,
                    self._path,
                    exc.strerror or exc,
                    self._noun,
                )
            return self._seen
        self._unlisted = False
        return signature

    def start(self) -> None:
        """Watch the source (``interval_s`` 0: only SIGHUP reloads)."""
        if self._interval_s > 0:
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class PolicyReloader(FileReloader[PolicySet]):
    """Reloads ``target.policies`` from the policies file at ``path``."""

    def __init__(
        self,
        target: HoldsPolicies,
        path: Path,
        *,
        interval_s: float = 1.0,
        load: Callable[[Path], PolicySet] = load_policies,
        on_reload: Callable[[str], None] = lambda result: None,
    ) -> None:
        def apply(policies: PolicySet) -> None:
            target.policies = policies

        super().__init__(
            path,
            load,
            apply,
            what="policy",
            noun="policies",
            describe=lambda policies: ", ".join(policies.names),
            interval_s=interval_s,
            on_reload=on_reload,
        )
