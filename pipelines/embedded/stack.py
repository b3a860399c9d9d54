"""The embedded stack: SeaweedFS (S3) + MLflow server, as detached local processes.

`prodtune services start` runs this on the default ports; the integration tests run a second
one on free ports in a temp dir. State under `home` (default `Settings().home`, `.prodtune`):

    home/credentials/   s3.json + seaweedfs-ids.json (0600, dir 0700): generated S3 keys
    home/seaweedfs/     SeaweedFS data
    home/mlflow/        mlflow.db (SQLite backend store)
    home/logs/          seaweedfs.log, mlflow.log
    home/run/           seaweedfs.pid, mlflow.pid, stack.json (ports of the last start), lock

Clients get their configuration from `env()`: the same variable names production sets to point
at real S3 and a real MLflow server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.common.settings import Settings
from pipelines.embedded.mlflow_server import mlflow_command, mlflow_env, mlflow_healthy, sqlite_uri
from pipelines.embedded.procs import ManagedProcess, ServiceError, check_ports_free, free_port
from pipelines.embedded.seaweed import (
    GRPC_OFFSET,
    S3Credentials,
    SeaweedPorts,
    ensure_bucket,
    load_or_create_credentials,
    s3_healthy,
    seaweed_command,
    weed_binary,
)

__all__ = ["SECRET_ENV_VARS", "EmbeddedStack", "ServiceError", "discover_env", "use_running_stack"]

# env() keys that must not be printed or logged unless the user asks for them.
SECRET_ENV_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
# Variables that outrank or shadow the ones env() sets (see components.common.settings): a process
# that should talk to this stack must not also carry these.
SHADOWING_VARS = (
    "PRODTUNE_MLFLOW_TRACKING_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "PRODTUNE_S3_ACCESS_KEY_ID",
    "PRODTUNE_S3_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "MLFLOW_S3_ENDPOINT_URL",
)
STACK_FILE = "stack.json"
# What the last `prodtune demo` served (alias, vector store): `prodtune serve` serves the same.
SERVING_FILE = "serving.json"
# Env names env() sets, plus the serving settings a demo leaves behind.
STACK_VARS = (
    "MLFLOW_TRACKING_URI",
    "PRODTUNE_S3_ENDPOINT_URL",
    "PRODTUNE_S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


class EmbeddedStack:
    """SeaweedFS + MLflow for one state dir. All methods are safe to call repeatedly."""

    def __init__(
        self,
        home: Path | None = None,
        s3_port: int = 8333,
        mlflow_port: int = 5050,
        *,
        master_port: int = 9333,
        volume_port: int = 9334,
        filer_port: int = 8888,
        bucket: str | None = None,
        host: str = "127.0.0.1",
        backend_uri: str | None = None,
        start_timeout: float = 180.0,
        stop_timeout: float = 30.0,
    ) -> None:
        settings = Settings()
        self.home = Path(home if home is not None else settings.home).resolve()
        self.bucket = bucket or settings.s3_bucket
        self.host = host
        # MLflow's backend store: SQLite under home unless given (e.g. PostgreSQL, as in production).
        self.backend_uri = backend_uri
        self.mlflow_port = mlflow_port
        self.seaweed_ports = SeaweedPorts(
            s3=s3_port, master=master_port, volume=volume_port, filer=filer_port
        )
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        run_dir, log_dir = self.home / "run", self.home / "logs"
        self._weed = ManagedProcess("seaweedfs", run_dir, log_dir, marker="weed")
        self._mlflow = ManagedProcess("mlflow", run_dir, log_dir, marker="mlflow")

    # --- construction helpers -------------------------------------------------------------

    @classmethod
    def load(cls, home: Path | None = None, **overrides: Any) -> EmbeddedStack:
        """The stack as last started in `home` (its saved ports), else the defaults."""
        home = Path(home if home is not None else Settings().home)
        saved: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((home / "run" / STACK_FILE).read_text(encoding="utf-8"))
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls(home, **saved)

    @classmethod
    def with_free_ports(cls, home: Path, **kwargs: Any) -> EmbeddedStack:
        """A stack whose every port (weed's gRPC port+10000 included) is free right now."""
        chosen = {p for name, p in kwargs.items() if name.endswith("_port")}
        chosen |= {p + GRPC_OFFSET for p in set(chosen)}

        def pick(with_offset: int | None) -> int:
            while True:
                port = free_port(with_offset=with_offset)
                group = {port} if with_offset is None else {port, port + with_offset}
                if not group & chosen:
                    chosen.update(group)
                    return port

        # Ports given explicitly are kept (a test may want one taken on purpose); the rest are picked.
        for name in ("s3_port", "master_port", "volume_port", "filer_port"):
            if name not in kwargs:
                kwargs[name] = pick(GRPC_OFFSET)
        if "mlflow_port" not in kwargs:
            kwargs["mlflow_port"] = pick(None)
        return cls(home, **kwargs)

    def __repr__(self) -> str:
        return (
            f"EmbeddedStack(home={str(self.home)!r}, s3_port={self.seaweed_ports.s3}, "
            f"mlflow_port={self.mlflow_port}, bucket={self.bucket!r})"
        )

    # --- addresses ------------------------------------------------------------------------

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://{self.host}:{self.seaweed_ports.s3}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def credentials(self) -> S3Credentials:
        return load_or_create_credentials(self.home / "credentials")

    def env(self) -> dict[str, str]:
        """What a client needs: names as read by `components.common.settings.Settings`."""
        creds = self.credentials
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PRODTUNE_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "PRODTUNE_S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": creds.access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key.get_secret_value(),
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> dict[str, bool]:
        """Start whatever is not running; returns {service: started_now}.

        Ports are checked before anything starts. If a later service fails, the ones this
        call started are stopped again, so a failed start leaves nothing behind.
        """
        with self._lock():
            creds = self.credentials
            weed_pid, mlflow_pid = self._weed.pid(), self._mlflow.pid()
            if weed_pid is not None or mlflow_pid is not None:
                self._check_same_ports()
            needed: dict[str, int] = {}
            if weed_pid is None:
                needed.update(self.seaweed_ports.named())
            if mlflow_pid is None:
                needed["mlflow"] = self.mlflow_port
            check_ports_free(needed, self.host)

            started: dict[str, bool] = {"seaweedfs": False, "mlflow": False}
            try:
                if weed_pid is None:
                    self._spawn_seaweed()
                    started["seaweedfs"] = True
                self._weed.wait_ready(lambda: s3_healthy(self.s3_endpoint_url, creds), self.start_timeout)
                # MLflow writes artifacts into this bucket: it must exist before the first run.
                ensure_bucket(self.s3_endpoint_url, creds, self.bucket)
                if mlflow_pid is None:
                    self._spawn_mlflow(creds)
                    started["mlflow"] = True
                self._mlflow.wait_ready(lambda: mlflow_healthy(self.tracking_uri), self.start_timeout)
            except BaseException:
                for name, proc in (("mlflow", self._mlflow), ("seaweedfs", self._weed)):
                    if started[name]:
                        proc.stop(self.stop_timeout)
                raise
            self._save_ports()
            return started

    def stop(self) -> dict[str, bool]:
        """Stop both services (MLflow first: it writes to S3); returns {service: was_running}."""
        with self._lock():
            stopped = {
                "mlflow": self._mlflow.stop(self.stop_timeout),
                "seaweedfs": self._weed.stop(self.stop_timeout),
            }
            self._remove_weed_sockets()
        return stopped

    def status(self) -> dict[str, Any]:
        weed_pid, mlflow_pid = self._weed.pid(), self._mlflow.pid()
        creds = self.credentials if weed_pid is not None else None
        return {
            "home": str(self.home),
            "bucket": self.bucket,
            "services": {
                "seaweedfs": {
                    "pid": weed_pid,
                    "running": weed_pid is not None,
                    "healthy": creds is not None and s3_healthy(self.s3_endpoint_url, creds),
                    "url": self.s3_endpoint_url,
                    "log": str(self._weed.log_file),
                },
                "mlflow": {
                    "pid": mlflow_pid,
                    "running": mlflow_pid is not None,
                    "healthy": mlflow_pid is not None and mlflow_healthy(self.tracking_uri),
                    "url": self.tracking_uri,
                    "log": str(self._mlflow.log_file),
                },
            },
        }

    def pids(self) -> dict[str, int | None]:
        return {"seaweedfs": self._weed.pid(), "mlflow": self._mlflow.pid()}

    # --- internals ------------------------------------------------------------------------

    def _spawn_seaweed(self) -> None:
        data_dir = self.home / "seaweedfs"
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd = seaweed_command(
            weed_binary(),
            data_dir,
            self.home / "credentials" / "seaweedfs-ids.json",
            self.seaweed_ports,
            self.host,
        )
        self._weed.spawn(cmd, env=_base_env(), cwd=data_dir)

    def _spawn_mlflow(self, creds: S3Credentials) -> None:
        mlflow_dir = self.home / "mlflow"
        mlflow_dir.mkdir(parents=True, exist_ok=True)
        cmd = mlflow_command(
            host=self.host,
            port=self.mlflow_port,
            backend_uri=self.backend_uri or sqlite_uri(mlflow_dir / "mlflow.db"),
            artifacts_destination=f"s3://{self.bucket}/mlflow",
        )
        env = mlflow_env(_base_env(), s3_endpoint=self.s3_endpoint_url, creds=creds)
        self._mlflow.spawn(cmd, env=env, cwd=mlflow_dir)

    def _remove_weed_sockets(self) -> None:
        # weed leaves /tmp/seaweedfs-<part>-<port>.sock behind; drop ours (never another stack's).
        if self._weed.pid() is not None:
            return
        for port in self.seaweed_ports.named().values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def _check_same_ports(self) -> None:
        """A running stack keeps its ports: asking for others would leave env() pointing nowhere."""
        try:
            saved = json.loads((self.home / "run" / STACK_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        wanted = self._port_config()
        differ = {k: (saved[k], v) for k, v in wanted.items() if k in saved and saved[k] != v}
        if differ:
            detail = ", ".join(f"{k} {old} (running) != {new} (asked)" for k, (old, new) in differ.items())
            raise ServiceError(
                f"the stack in {self.home} already runs with other settings: {detail}; stop it first"
            )

    def _port_config(self) -> dict[str, Any]:
        return {
            "s3_port": self.seaweed_ports.s3,
            "mlflow_port": self.mlflow_port,
            "master_port": self.seaweed_ports.master,
            "volume_port": self.seaweed_ports.volume,
            "filer_port": self.seaweed_ports.filer,
            "bucket": self.bucket,
            "host": self.host,
        }

    def _save_ports(self) -> None:
        text = json.dumps(self._port_config(), indent=2) + "\n"
        (self.home / "run" / STACK_FILE).write_text(text, encoding="utf-8")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop on one home: two `services start` must not race for ports."""
        run_dir = self.home / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def discover_env(home: Path | None = None) -> dict[str, str]:
    """The env of the embedded stack running in `home` (empty if none runs there), plus what the
    last demo served (`run/serving.json`: registry alias, vector store)."""
    stack = EmbeddedStack.load(home)
    if None in stack.pids().values():
        return {}
    found = stack.env()
    with contextlib.suppress(OSError, ValueError):
        serving = json.loads((stack.home / "run" / SERVING_FILE).read_text(encoding="utf-8"))
        found.update({k: str(v) for k, v in serving.items() if k.startswith("PRODTUNE_")})
    return found


def use_running_stack(environ: dict[str, str] | os._Environ[str], home: Path | None = None) -> dict[str, str]:
    """Point this process at the running embedded stack unless the environment already names a
    server or credentials (explicit env wins, and is never mixed with the stack's); returns what
    was added."""
    if any(environ.get(k) for k in (*STACK_VARS, *SHADOWING_VARS)):
        return {}
    added = {k: v for k, v in discover_env(home).items() if not environ.get(k)}
    environ.update(added)
    return added


def save_serving(home: Path, values: dict[str, str]) -> None:
    """Record what a demo serves, for later `prodtune serve` / `models` calls to find."""
    run_dir = Path(home) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SERVING_FILE).write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


def _base_env() -> dict[str, str]:
    # Services inherit the caller's environment (PATH, locale) minus secrets it has no use for.
    return {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
