"""Polling with a deadline: the one way the harness waits for something to become true.

Conditions are polled, never slept on blindly. Processes the condition depends on can be
watched: if one of them exits, waiting stops at once with its log instead of running
into the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from devstack.errors import DeadlineExceededError, ProcessDiedError

__all__ = ["Watched", "wait_until"]

T = TypeVar("T")


class Watched(Protocol):
    """What ``wait_until`` needs from a process it watches."""

    @property
    def name(self) -> str: ...

    @property
    def returncode(self) -> int | None: ...

    def is_running(self) -> bool: ...

    def log_tail(self, n: int = 40) -> str: ...


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    waiting_for: str,
    retry_on: tuple[type[Exception], ...] = (),
    watch: Sequence[Watched] = (),
    interval: float = 0.05,
) -> T:
    """Call ``check`` until it returns something other than ``None``; return that.

    ``check`` is called at least once, then every ``interval`` seconds until ``timeout``
    seconds have passed. Exceptions of the types in ``retry_on`` count as "not yet";
    others propagate. ``waiting_for`` describes the condition in error messages.

    Raises:
        ProcessDiedError: a process in ``watch`` is not running (checked before each
            call of ``check``).
        DeadlineExceededError: the deadline passed; the message carries the last
            retried exception and the log tails of the watched processes.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        for process in watch:
            if not process.is_running():
                raise ProcessDiedError(
                    process.name, process.returncode, process.log_tail(), waiting_for
                )
        try:
            result = check()
        except retry_on as exc:
            last_error = exc
        else:
            if result is not None:
                return result
        if time.monotonic() >= deadline:
            raise DeadlineExceededError(waiting_for, timeout, _detail(last_error, watch))
        time.sleep(interval)


def _detail(last_error: Exception | None, watch: Sequence[Watched]) -> str:
    parts = []
    if last_error is not None:
        parts.append(f"last error: {type(last_error).__name__}: {last_error}")
    for process in watch:
        parts.append(f"last log lines of {process.name!r}:\n{process.log_tail()}")
    return "\n".join(parts)
