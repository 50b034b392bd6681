"""``LIMITER_WORKERS`` > 1: that many server processes on one port, and this one watching them.

The parent never builds a gRPC object. It checks everything a worker would refuse first
(settings, the policies file, the TLS files, the gRPC and metrics addresses) and exits 2
with the message before any worker exists. Then it starts each worker as a fresh
interpreter running the same entry point (``python -m limiter_service``) with
``LIMITER_WORKER`` set, so no gRPC state is ever inherited through ``fork``. Each worker is
the whole server (decisions, health, reflection) listening with ``SO_REUSEPORT``; the
kernel spreads new connections over them.

Supervision:

- A worker that exits is started again, and its exit code or signal is logged. More than
  ``CRASH_LIMIT`` such exits within ``CRASH_WINDOW_S`` seconds means something is wrong
  that a restart will not fix: the parent stops the rest and exits 1. A worker that exits
  2 (a configuration error, such as the port taken between the parent's check and the
  worker's bind) stops everything at once with exit 2.
- SIGTERM / SIGINT are forwarded; each worker drains its calls within
  ``LIMITER_SHUTDOWN_GRACE_S`` and exits 0, and the parent exits 0 once all have. A worker
  still running ``STOP_MARGIN_S`` after the grace is killed, and the parent exits 1.
- SIGHUP is forwarded: every worker reloads its TLS certificates and policies file.
- A worker whose parent dies is sent SIGTERM by the kernel (Linux), so none outlive it.

Metrics: see ``limiter_service.worker_metrics``; the parent serves the one ``/metrics``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from limiter_service.errors import ConfigError
from limiter_service.settings import Settings
from limiter_service.worker_metrics import MULTIPROC_ENV, SupervisorMetrics

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW_S",
    "STOP_MARGIN_S",
    "WORKER_ENV",
    "WorkerRole",
    "check_listen",
    "supervise",
    "worker_role",
]

log = logging.getLogger("limiter_service.workers")

WORKER_ENV = "LIMITER_WORKER"
"""Set by the parent for its workers only: ``<index>:<parent pid>``."""
CRASH_LIMIT = 5
"""Worker exits tolerated within ``CRASH_WINDOW_S``; one more and the parent gives up."""
CRASH_WINDOW_S = 60.0
STOP_MARGIN_S = 5.0
"""Seconds past ``LIMITER_SHUTDOWN_GRACE_S`` a worker gets to exit after SIGTERM."""
_TICK_S = 1.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerRole:
    """This process is worker ``index`` of the parent ``parent_pid``."""

    index: int
    parent_pid: int


def worker_role() -> WorkerRole | None:
    """The role ``LIMITER_WORKER`` gives this process; ``None``: not a worker."""
    value = os.environ.get(WORKER_ENV, "")
    index, _, parent = value.partition(":")
    if not index.isdigit() or not parent.isdigit():
        return None
    return WorkerRole(int(index), int(parent))


def die_with_parent(role: WorkerRole) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux ``prctl``), then make sure
    it has not died already; elsewhere nothing is asked."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != role.parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def check_listen(listen: str) -> None:
    """Raise ``ConfigError`` naming ``LIMITER_LISTEN`` unless every address ``listen``
    names can be bound now by a socket *without* ``SO_REUSEPORT``: so a port held by any
    other program, even one sharing it with ``SO_REUSEPORT`` itself, is refused, as it is
    with one worker. (``SO_REUSEADDR``, as gRPC sets it, lets connections of an earlier
    run still in TIME_WAIT pass.)"""
    host, sep, port = listen.rpartition(":")
    if listen.startswith("unix:") or not sep or not port.isdigit():
        raise ConfigError(
            f"LIMITER_LISTEN: cannot listen on {listen} with several workers (name a "
            "host:port, or set LIMITER_WORKERS=1)"
        )
    if int(port) == 0:
        raise ConfigError(
            "LIMITER_LISTEN: port 0 would give each worker a port of its own; name the "
            "port, or set LIMITER_WORKERS=1"
        )
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError, OverflowError) as exc:
        raise ConfigError(f"LIMITER_LISTEN: cannot listen on {listen} ({exc})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ConfigError(
                    f"LIMITER_LISTEN: cannot listen on {listen} ({exc.strerror or exc})"
                ) from None


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Supervisor:
    def __init__(self, settings: Settings, count: int, metrics_dir: Path | None) -> None:
        self._settings = settings
        self._count = count
        self._metrics_dir = metrics_dir
        self._metrics: SupervisorMetrics | None = None
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._exits: collections.deque[float] = collections.deque()
        self._stopping_since: float | None = None
        self._result = 0

    def _start(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: f"{index}:{os.getpid()}"}
        if self._metrics_dir is not None:
            env[MULTIPROC_ENV] = str(self._metrics_dir)
        # Started with SIGHUP blocked, a worker cannot die of one before its handler is
        # in place; it unblocks it then (server.serve) and reloads what is pending.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "limiter_service"], env=env, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            log.error("cannot start worker %d (%s); stopping", index, exc)
            self._stop(1)
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._workers[index] = process
        log.info("worker %d started (pid %d)", index, process.pid)

    def _signal_all(self, sig: signal.Signals) -> None:
        for process in self._workers.values():
            if process.poll() is None:
                process.send_signal(sig)

    def _reap(self) -> None:
        for index, process in list(self._workers.items()):
            code = process.poll()
            if code is None:
                continue
            del self._workers[index]
            if self._metrics is not None:
                self._metrics.worker_gone(process.pid)
            if self._stopping_since is not None:
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    log.warning(
                        "worker %d (pid %d) stopped: %s", index, process.pid, _describe(code)
                    )
                    self._result = 1
                continue
            self._exited(index, process.pid, code)

    def _exited(self, index: int, pid: int, code: int) -> None:
        if code == 2:
            log.error("worker %d (pid %d) refused its configuration (exit 2); stopping", index, pid)
            self._stop(2)
            return
        now = time.monotonic()
        self._exits.append(now)
        while self._exits and self._exits[0] < now - CRASH_WINDOW_S:
            self._exits.popleft()
        if len(self._exits) > CRASH_LIMIT:
            log.error(
                "worker %d (pid %d) %s: %d worker exits within %.0f s, giving up",
                index,
                pid,
                _describe(code),
                len(self._exits),
                CRASH_WINDOW_S,
            )
            self._stop(1)
            return
        log.error("worker %d (pid %d) %s; starting it again", index, pid, _describe(code))
        if self._metrics is not None:
            self._metrics.restarted()
        self._start(index)

    def _stop(self, result: int) -> None:
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
            self._result = result
            self._signal_all(signal.SIGTERM)

    def _on_signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            if self._stopping_since is None:
                log.info(
                    "stopping: %d workers finish in-flight RPCs (grace %.1fs)",
                    len(self._workers),
                    self._settings.shutdown_grace_s,
                )
            self._stop(self._result)
        elif sig == signal.SIGHUP and self._stopping_since is None:
            log.info("SIGHUP: reloading in %d workers", len(self._workers))
            self._signal_all(signal.SIGHUP)

    def run(self, metrics: SupervisorMetrics | None, mask: Iterable[int] | None = None) -> int:
        """Start the workers and watch them until they have all stopped; the exit code.
        ``mask``: the signal mask to restore once the handlers are in place (SIGTERM
        and SIGINT blocked until then are handled first); on return they are blocked."""
        self._metrics = metrics
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        pending: list[int] = []
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, lambda s, _: pending.append(s)) for sig in handled}
        old_fd = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        selector = selectors.DefaultSelector()
        selector.register(wake_read, selectors.EVENT_READ)
        try:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            while pending:
                self._on_signal(pending.pop(0))
            for index in range(self._count):
                if self._stopping_since is None:
                    self._start(index)
            log.info(
                json.dumps(
                    {
                        "event": "workers started",
                        "listen": self._settings.listen,
                        "workers": self._count,
                        "pids": [p.pid for p in self._workers.values()],
                        "metrics": self._settings.metrics_listen or "off",
                    }
                )
            )
            if metrics is not None:
                metrics.running(lambda: len(self._workers))
            while self._workers:
                selector.select(_TICK_S)
                try:
                    while wake_read.recv(512):
                        pass
                except BlockingIOError:
                    pass
                while pending:
                    self._on_signal(pending.pop(0))
                self._reap()
                if self._stopping_since is not None and time.monotonic() > (
                    self._stopping_since + self._settings.shutdown_grace_s + STOP_MARGIN_S
                ):
                    log.error("workers still running after the grace; killing them")
                    self._signal_all(signal.SIGKILL)
                    self._result = 1
        finally:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            selector.close()
            wake_read.close()
            wake_write.close()
        log.info("stopped (exit %d)", self._result)
        return self._result


def supervise(settings: Settings, count: int) -> int:
    """Run ``count`` workers until SIGTERM/SIGINT; the exit code (0: all drained).

    Raises ``ConfigError`` before starting any worker when a worker would refuse the
    configuration or an address cannot be listened on.
    """
    from limiter_service.server import build_envoy_config, build_policies
    from limiter_service.tls import check_server_tls

    build_policies(settings)
    build_envoy_config(settings)
    check_server_tls(settings)
    check_listen(settings.listen)
    metrics_dir = None
    metrics = None
    # SIGTERM/SIGINT stay pending until ``run`` handles them, and again while cleaning up,
    # so the metrics directory is removed whenever one arrives.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        if settings.metrics_address is not None:
            metrics_dir = Path(tempfile.mkdtemp(prefix="limiter-metrics-"))
            metrics = SupervisorMetrics(metrics_dir, count)
            metrics.serve(settings)
        return _Supervisor(settings, count, metrics_dir).run(metrics, mask)
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        if metrics is not None:
            metrics.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
