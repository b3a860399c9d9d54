"""ManagedProcess with real (tiny) processes: pid files, stale pids, group stop, startup failure."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from pipelines.embedded.procs import ManagedProcess, ServiceError, pid_alive, session_members

# A parent that forks a child and ignores SIGTERM in the child: stop() must still leave nothing.
FAMILY = """
import os, signal, sys, time
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
    sys.exit(0)
print("family up", flush=True)
time.sleep(600)
"""


def _proc(tmp_path: Path, marker: str = "python") -> ManagedProcess:
    return ManagedProcess("svc", tmp_path / "run", tmp_path / "logs", marker=marker)


def test_spawn_records_pid_and_detaches(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    pid = proc.spawn([sys.executable, "-c", FAMILY], env=dict(os.environ), cwd=tmp_path)
    try:
        assert proc.pid() == pid
        assert (tmp_path / "run" / "svc.pid").read_text().strip() == str(pid)
        assert os.getsid(pid) == pid  # own session: a Ctrl-C in our terminal does not reach it
        proc.wait_ready(lambda: "family up" in proc.log_file.read_text(), timeout=30)
        deadline = time.monotonic() + 10
        while len(session_members(pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        members = session_members(pid)
        assert len(members) == 2
    finally:
        stopped = proc.stop(timeout=1.0)
    assert stopped
    assert not pid_alive(pid)
    assert session_members(pid) == []  # the SIGTERM-ignoring child was killed too
    assert not (tmp_path / "run" / "svc.pid").exists()
    assert proc.stop() is False


def test_stale_pid_file_is_dropped(tmp_path: Path) -> None:
    proc = _proc(tmp_path, marker="prodtune-no-such-service")
    (tmp_path / "run").mkdir()
    # Our own pid is alive but is not the service: the marker check must reject it.
    proc.pid_file.write_text(f"{os.getpid()}\n")
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    proc.pid_file.write_text("not a pid\n")
    assert proc.pid() is None


def test_exit_during_startup_reports_log_tail(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    script = "import sys; print('bind: address already in use', flush=True); sys.exit(3)"
    proc.spawn([sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path)
    with pytest.raises(ServiceError, match=r"(?s)exited during startup with status 3.*already in use"):
        proc.wait_ready(lambda: False, timeout=30)
    assert proc.pid() is None


def test_startup_timeout_reports_log_tail(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    script = "import time; print('still warming up', flush=True); time.sleep(600)"
    proc.spawn([sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path)
    try:
        with pytest.raises(ServiceError, match=r"(?s)not ready after.*still warming up"):
            proc.wait_ready(lambda: False, timeout=1.5)
    finally:
        proc.stop(timeout=2)
