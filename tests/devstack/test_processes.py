"""Tests of managed child processes, using small Python children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest

import devstack
from devstack import (
    DeadlineExceededError,
    ManagedProcess,
    ProcessDiedError,
    ProcessGroup,
    free_port,
    wait_for_tcp,
    wait_until,
)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ready(process: ManagedProcess) -> bool | None:
    return True if "ready" in process.log_tail() else None


_IGNORES_TERM = """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(60)
"""


def test_output_goes_to_log_and_exit_status_is_reported(tmp_path: Path) -> None:
    process = ManagedProcess(
        "talker",
        _python("import os, sys; print('out', os.environ['GREETING']); sys.exit(3)"),
        log_dir=tmp_path,
        env={"GREETING": "hi"},
    )
    assert process.wait_exit(10.0) == 3
    assert process.returncode == 3
    assert not process.is_running()
    assert process.log_path == tmp_path / "talker.log"
    assert process.log_tail() == "out hi"


def test_log_tail_returns_only_the_last_lines(tmp_path: Path) -> None:
    process = ManagedProcess("counter", _python("for i in range(100): print(i)"), log_dir=tmp_path)
    process.wait_exit(10.0)
    assert process.log_tail(3).splitlines() == ["97", "98", "99"]


def test_terminate_kills_a_process_ignoring_sigterm(tmp_path: Path) -> None:
    process = ManagedProcess("stubborn", _python(_IGNORES_TERM), log_dir=tmp_path)
    wait_until(lambda: _ready(process), timeout=10.0, waiting_for="child ready", watch=[process])
    assert process.terminate(timeout=0.2) == -signal.SIGKILL
    assert not _pid_alive(process.pid)


def test_wait_exit_times_out_on_a_running_process(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", _python("import time; time.sleep(60)"), log_dir=tmp_path)
    try:
        with pytest.raises(DeadlineExceededError):
            process.wait_exit(0.1)
        assert process.is_running()
    finally:
        assert process.kill() == -signal.SIGKILL


def test_wait_for_tcp_reports_a_dead_process_with_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "crasher", _python("import sys; print('cannot bind'); sys.exit(1)"), log_dir=tmp_path
    )
    with pytest.raises(ProcessDiedError) as caught:
        wait_for_tcp("127.0.0.1", free_port(), 10.0, process)
    assert caught.value.returncode == 1
    assert "cannot bind" in str(caught.value)


def test_wait_for_tcp_times_out_when_nothing_listens() -> None:
    with pytest.raises(DeadlineExceededError):
        wait_for_tcp("127.0.0.1", free_port(), 0.2)


def test_wait_for_tcp_returns_once_a_listener_exists() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_tcp("127.0.0.1", listener.getsockname()[1], 5.0)


def test_group_stops_members_in_reverse_start_order(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    code = """
        import signal, sys, time
        def stop(*_):
            with open(sys.argv[2], "a") as f:
                f.write(sys.argv[1] + "\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
    """
    with ProcessGroup(tmp_path / "logs") as group:
        for name in ("first", "second", "third"):
            process = group.start(name, [*_python(code), name, str(record)])
            wait_until(partial(_ready, process), timeout=10.0, waiting_for=name, watch=[process])
    assert record.read_text().split() == ["third", "second", "first"]
    assert all(p.returncode == 0 for p in group.processes)


def test_interpreter_exit_kills_processes_left_running(tmp_path: Path) -> None:
    script = f"""
        from pathlib import Path
        from devstack import ManagedProcess
        p = ManagedProcess("orphan", ["sleep", "60"], log_dir=Path({str(tmp_path)!r}))
        print(p.pid)
    """
    env = {**os.environ, "PYTHONPATH": str(Path(devstack.__file__).parent.parent)}
    result = subprocess.run(
        _python(script), capture_output=True, text=True, timeout=30, check=True, env=env
    )
    assert not _pid_alive(int(result.stdout))
