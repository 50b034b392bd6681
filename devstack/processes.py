"""Real child processes with logs, readiness checks and guaranteed clean-up.

Every process runs in its own session (so a Ctrl-C in the terminal reaches only us, and
we decide how children stop), writes stdout and stderr to ``<log_dir>/<name>.log``, and
is signalled by its PID only. Whatever is still running when the interpreter exits is
killed by an ``atexit`` hook, so a crashed test run leaves no orphans behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal as signals
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DeadlineExceededError
from devstack.lifecycle import StopsOnExit
from devstack.waiting import wait_until

__all__ = ["ManagedProcess", "ProcessGroup", "wait_for_tcp"]

_LOG_TAIL_BYTES = 64 * 1024

# Strong references on purpose: a process nobody refers to any more must still be
# killed at exit. Entries leave the set once their process has been reaped.
_LIVE: set[ManagedProcess] = set()


class ManagedProcess:
    """One child process, started by the constructor.

    ``env`` entries are laid over the parent's environment (``None``: inherit it as is).
    The log file is opened for appending, so a process restarted under the same name
    keeps one log. ``umask`` (-1: inherit ours) is the child's file-creation mask. Raises
    ``OSError`` (e.g. ``FileNotFoundError``) when ``argv[0]`` cannot be executed.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        umask: int = -1,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self._name = name
        self._log_path = log_dir / f"{name}.log"
        full_env = None if env is None else {**os.environ, **env}
        with self._log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                umask=umask,
            )
        _LIVE.add(self)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.returncode}"
        return f"<ManagedProcess {self._name!r} pid={self.pid} {state}>"

    @property
    def name(self) -> str:
        """The name given at start; also the log file's stem."""
        return self._name

    @property
    def pid(self) -> int:
        """The child's PID (still reported after it exited)."""
        return self._popen.pid

    @property
    def log_path(self) -> Path:
        """The file receiving the child's stdout and stderr."""
        return self._log_path

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped, else ``None``; negative means killed by that signal."""
        return self._popen.returncode

    def is_running(self) -> bool:
        """Whether the child has not exited yet (reaps it if it has)."""
        if self._popen.poll() is None:
            return True
        _LIVE.discard(self)
        return False

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's PID; does nothing if it was already reaped."""
        self._popen.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL the child, reap it and return its exit status."""
        self.signal(signals.SIGKILL)
        return self._reap(None)

    def terminate(self, timeout: float = 10.0) -> int:
        """Stop the child and return its exit status.

        Sends SIGTERM and waits up to ``timeout`` seconds, then SIGKILLs. Returns at once
        if the child already exited.
        """
        if not self.is_running():
            return self._reap(None)
        self.signal(signals.SIGTERM)
        try:
            return self._reap(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def wait_exit(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the child to exit; return its status.

        Raises ``DeadlineExceededError`` (with the log tail) if it is still running.
        """
        try:
            return self._reap(timeout)
        except subprocess.TimeoutExpired:
            raise DeadlineExceededError(
                f"process {self._name!r} (pid {self.pid}) to exit", timeout, self.log_tail()
            ) from None

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the log, undecodable bytes replaced; "" if none."""
        try:
            with self._log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - _LOG_TAIL_BYTES))
                data = log.read()
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-n:])

    def _reap(self, timeout: float | None) -> int:
        code = self._popen.wait(timeout)
        _LIVE.discard(self)
        return code


def wait_for_tcp(
    host: str, port: int, timeout: float, process: ManagedProcess | None = None
) -> None:
    """Return once a TCP connection to ``(host, port)`` succeeds.

    Raises ``ProcessDiedError`` as soon as ``process`` (if given) has exited, and
    ``DeadlineExceededError`` after ``timeout`` seconds; both carry its log tail.
    """

    def connects() -> bool | None:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_until(
        connects,
        timeout=timeout,
        waiting_for=f"TCP {host}:{port} to accept connections",
        retry_on=(OSError,),
        watch=() if process is None else (process,),
    )


@dataclass(frozen=True)
class ServiceNode:
    """A running process and the ``host:port`` it serves on."""

    process: ManagedProcess
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` (an Nginx upstream server, a gRPC target)."""
        return f"{self.host}:{self.port}"


class ProcessGroup(StopsOnExit):
    """Processes started together and stopped together, in reverse start order.

    Use as a context manager, or call ``stop()``; both are safe to repeat. Logs go to
    ``log_dir``; each process's stop gets ``stop_timeout`` seconds before SIGKILL.
    """

    def __init__(self, log_dir: Path, *, stop_timeout: float = 10.0) -> None:
        self._log_dir = log_dir
        self._stop_timeout = stop_timeout
        self._processes: list[ManagedProcess] = []

    @property
    def log_dir(self) -> Path:
        """Directory holding every member's log file."""
        return self._log_dir

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        """Every process started so far (running or not), in start order."""
        return tuple(self._processes)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        umask: int = -1,
    ) -> ManagedProcess:
        """Start a member; see ``ManagedProcess`` for ``env``, ``cwd`` and ``umask``."""
        process = ManagedProcess(name, argv, log_dir=self._log_dir, env=env, cwd=cwd, umask=umask)
        self._processes.append(process)
        return process

    def stop(self) -> None:
        """Terminate every member still running, last started first.

        Every member is attempted even if stopping one fails; the first failure is then
        re-raised.
        """
        first_error: OSError | None = None
        for process in reversed(self._processes):
            try:
                process.terminate(self._stop_timeout)
            except OSError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error


@atexit.register
def _kill_survivors() -> None:
    for process in list(_LIVE):
        with contextlib.suppress(OSError):
            process.kill()
