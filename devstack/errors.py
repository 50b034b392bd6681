"""Errors raised by the devstack harness.

The whole tree::

    DevstackError                 base; catch this to handle any harness failure
    ├── ProcessDiedError          a managed process exited while we depended on it
    ├── DeadlineExceededError     a readiness condition did not hold before its deadline
    │                             (also a ``TimeoutError``)
    └── UnknownNodeError          an address names no node of the topology
                                  (also a ``KeyError``)

Every error's message is meant to be read in a failing test's output: it says what we
were waiting for and, where a process is involved, ends with the tail of its log.
"""

from __future__ import annotations

__all__ = [
    "DeadlineExceededError",
    "DevstackError",
    "ProcessDiedError",
    "UnknownNodeError",
]


class DevstackError(Exception):
    """Base class of every error the devstack harness raises on purpose."""


class ProcessDiedError(DevstackError):
    """A managed process exited while a caller still needed it.

    Attributes:
        name: the process's name in its group.
        returncode: its exit status (negative: killed by that signal number).
        log_tail: the last lines of its combined stdout/stderr log.
    """

    def __init__(self, name: str, returncode: int | None, log_tail: str, waiting_for: str) -> None:
        self.name = name
        self.returncode = returncode
        self.log_tail = log_tail
        super().__init__(
            f"process {name!r} exited with status {returncode} while waiting for "
            f"{waiting_for}; last log lines:\n{log_tail}"
        )


class DeadlineExceededError(DevstackError, TimeoutError):
    """A polled condition was still false when its deadline passed.

    Attributes:
        waiting_for: human description of the condition.
        timeout: the deadline that passed, in seconds.
    """

    def __init__(self, waiting_for: str, timeout: float, detail: str = "") -> None:
        self.waiting_for = waiting_for
        self.timeout = timeout
        message = f"gave up after {timeout:.1f} s waiting for {waiting_for}"
        super().__init__(f"{message}\n{detail}" if detail else message)


class UnknownNodeError(DevstackError, KeyError):
    """An address (host, port) that belongs to no node of the topology."""

    def __str__(self) -> str:
        # KeyError would repr() the message; we want it readable.
        return str(self.args[0]) if self.args else "unknown node"
