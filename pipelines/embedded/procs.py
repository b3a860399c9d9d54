"""Detached service processes: spawn, pid files, readiness, clean stop, port checks.

Each service runs in its own session (so a Ctrl-C in the shell that started it does not kill it,
and stopping it can signal the whole process group: MLflow forks uvicorn workers), logs to
`home/logs/<name>.log` and records its pid in `home/run/<name>.pid`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOG_TAIL_LINES = 30


class ServiceError(RuntimeError):
    """An embedded service could not be started, checked or stopped; the message says why."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on (or holds) host:port.

    SO_REUSEADDR mirrors what the servers themselves do, so a port in TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_port(host: str = "127.0.0.1", *, with_offset: int | None = None) -> int:
    """A port that is free now; with `with_offset`, port+offset is free too (weed's gRPC ports)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if with_offset is None:
            return port
        other = port + with_offset
        if other < 65536 and not port_in_use(other, host):
            return port
    raise ServiceError("could not find a free port pair on " + host)


def check_ports_free(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Raise one clear error naming every taken port and the service that needs it."""
    bad = [f"{port} ({what})" for what, port in ports.items() if not 0 < port < 65536]
    if bad:
        raise ServiceError(
            f"port(s) out of range: {', '.join(bad)}. SeaweedFS binds gRPC on port+10000, "
            "so its ports must be below 55536."
        )
    taken = [f"{port} ({what})" for what, port in ports.items() if port_in_use(port, host)]
    if taken:
        raise ServiceError(
            f"port(s) already in use on {host}: {', '.join(taken)}. Stop whatever holds them "
            "(`ss -ltnp | grep PORT`) or choose other ports."
        )


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def pid_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def session_members(sid: int) -> list[int]:
    """Pids of live processes in session `sid` (a service and everything it forked)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid and not _is_zombie(int(entry.name)):
                members.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return members


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One detached service process, tracked through its pid file.

    `marker` must appear in the process's command line; it guards against a stale pid file
    whose pid the kernel has since given to an unrelated process.
    """

    name: str
    run_dir: Path
    log_dir: Path
    marker: str
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running service, or None (a stale pid file is removed)."""
        if self._popen is not None:
            # Our own child: the Popen handle is authoritative (and reaps it when it exits).
            if self._popen.poll() is None:
                return self._popen.pid
            self._popen = None
            self.pid_file.unlink(missing_ok=True)
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and self._cmdline_matches(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _cmdline_matches(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return False
        return self.marker.encode() in cmdline

    def spawn(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid_file.write_text(f"{self._popen.pid}\n")
        return self._popen.pid

    def wait_ready(self, check: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
        """Poll `check` until it passes; fail fast if the process dies, with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            popen = self._popen
            if self.pid() is None:
                code = f" with status {popen.returncode}" if popen is not None else ""
                raise ServiceError(
                    f"{self.name} exited during startup{code}; last lines of {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} not ready after {timeout:.0f}s; last lines of {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            time.sleep(interval)

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL after `timeout`; remove the pid file.

        Returns True if a running process was stopped.
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # The service leads its own session and process group (start_new_session=True).
        self._signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._group_alive(pid):
            time.sleep(0.1)
        if self._group_alive(pid):
            self._signal_group(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while time.monotonic() < kill_deadline and self._group_alive(pid):
                time.sleep(0.1)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1)
            self._popen = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def _group_alive(self, pid: int) -> bool:
        return pid_alive(pid) or bool(session_members(pid))

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            # The leader is gone; children that outlived it still carry its session id.
            for member in session_members(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, sig)
