"""The embedded teacher: llama-cpp-python's OpenAI-compatible server on the small local model.

The demo and the integration tests point the synthesis step at it exactly as they would at a paid
endpoint (`OPENAI_BASE_URL`, `OPENAI_API_KEY`), so the same code path is exercised offline. A fresh
random API key is generated per start and handed to the server through its environment, never on
the command line (where `ps` would show it).

    with TeacherServer(default_model_path()) as teacher:
        env = teacher.env()   # {"OPENAI_BASE_URL": ..., "OPENAI_API_KEY": ...}
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from pydantic import SecretStr

from components.common.errors import InputError

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct"
# Synthesis settings for the small CPU teacher (merged into the step config by `--local-teacher`):
# read from the embedded profile's recipe, pipelines/configs/local/synthesis.yaml, which owns them.
LOCAL_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "local" / "synthesis.yaml"
_TEACHER_KEYS = ("model", "prompt", "concurrency", "pairs_per_product", "max_tokens", "temperature",
                 "timeout_s", "max_replies", "regenerate_ungrounded")  # fmt: skip


def _local_teacher_config() -> dict[str, object]:
    recipe = yaml.safe_load(LOCAL_RECIPE.read_text(encoding="utf-8"))
    return {k: recipe[k] for k in _TEACHER_KEYS if k in recipe}


LOCAL_TEACHER_CONFIG = _local_teacher_config()


def default_model_path() -> Path:
    """`PRODTUNE_TEACHER_MODEL`, else the GGUF that scripts/setup.sh places in the prodtune cache."""
    env = os.environ.get("PRODTUNE_TEACHER_MODEL")
    if env:
        return Path(env)
    from components.common.cache import cache_root

    return cache_root() / "models" / MODEL_FILE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TeacherServer:
    def __init__(
        self,
        model_path: str | Path,
        *,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int = 1,  # on a busy shared CPU, llama.cpp's thread barriers make >1 much slower
        alias: str = MODEL_ALIAS,
        log_path: str | Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.model_path = Path(model_path)
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.alias = alias
        self.api_key = SecretStr("sk-local-" + secrets.token_hex(16))
        self.log_path = Path(log_path) if log_path else None
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """Variables that point the openai client (and so the synthesis step) at this server."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key.get_secret_value()}

    def start(self, timeout_s: float = 180.0) -> TeacherServer:
        if not self.model_path.is_file():
            raise InputError("teacher model not found (run scripts/setup.sh)", path=self.model_path)
        cmd = [
            self.python, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            # one request at a time on CPU; do not abort a running request when the next arrives
            "--interrupt_requests", "false",
        ]  # fmt: skip
        env = {**os.environ, "API_KEY": self.api_key.get_secret_value()}
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                status = self._proc.returncode
                raise RuntimeError(f"teacher server exited with status {status}{self._log_hint()}")
            try:
                if httpx.get(f"{self.base_url}/models", headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"teacher server not healthy after {timeout_s:.0f}s{self._log_hint()}")

    def _log_hint(self) -> str:
        return f" (log: {self.log_path})" if self.log_path else ""

    def stop(self, timeout_s: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()  # type: ignore[union-attr]
        self._log = None

    def __enter__(self) -> TeacherServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
