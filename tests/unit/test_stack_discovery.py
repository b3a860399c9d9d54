"""The CLI finds the running embedded stack by itself; explicit env always wins."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pipelines.embedded import stack as stack_mod
from pipelines.embedded.stack import EmbeddedStack, discover_env, save_serving, use_running_stack


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend both services run; discovery must then read ports and keys from the state dir.
    monkeypatch.setattr(EmbeddedStack, "pids", lambda self: {"seaweedfs": 101, "mlflow": 102})


def _saved_ports(home: Path, mlflow_port: int = 5999, s3_port: int = 8999) -> None:
    (home / "run").mkdir(parents=True, exist_ok=True)
    (home / "run" / "stack.json").write_text(json.dumps({"mlflow_port": mlflow_port, "s3_port": s3_port}))


def test_nothing_running_means_nothing_added(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert use_running_stack(env, tmp_path) == {} and env == {}


def test_running_stack_is_found_on_its_saved_ports(tmp_path: Path, running: None) -> None:
    _saved_ports(tmp_path)
    save_serving(tmp_path, {"PRODTUNE_LLM_ALIAS": "candidate", "PRODTUNE_SERVING_STORE_PATH": "/s"})
    env: dict[str, str] = {"PATH": "/bin"}
    added = use_running_stack(env, tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert env["PRODTUNE_S3_ENDPOINT_URL"] == "http://127.0.0.1:8999"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert env["PRODTUNE_LLM_ALIAS"] == "candidate" and env["PRODTUNE_SERVING_STORE_PATH"] == "/s"
    assert set(added) == set(env) - {"PATH"}


@pytest.mark.parametrize(
    "name", ["MLFLOW_TRACKING_URI", "PRODTUNE_MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"]
)
def test_explicit_env_wins_and_nothing_is_mixed_in(tmp_path: Path, running: None, name: str) -> None:
    _saved_ports(tmp_path)
    env = {name: "https://prod.example"}
    assert use_running_stack(env, tmp_path) == {}
    assert env == {name: "https://prod.example"}


def test_discover_env_is_empty_when_one_service_is_down(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(EmbeddedStack, "pids", lambda self: {"seaweedfs": 101, "mlflow": None})
    assert discover_env(tmp_path) == {}


def test_cli_discovers_only_for_commands_that_use_the_stack(monkeypatch) -> None:
    from pipelines import cli

    calls: list[int] = []
    monkeypatch.setattr(stack_mod, "use_running_stack", lambda environ: calls.append(1) or {})
    cli._find_stack(["prep", "--input", "x"])
    cli._find_stack(["--help"])
    assert calls == []
    cli._find_stack(["models", "--json"])
    cli._find_stack(["serve"])
    assert len(calls) == 2


def test_serve_creates_the_api_key_file_once(tmp_path: Path, monkeypatch) -> None:
    from pipelines.commands.serve import ensure_api_key

    monkeypatch.delenv("PRODTUNE_API_KEY", raising=False)
    path, created = ensure_api_key(tmp_path / "home")
    key = os.environ["PRODTUNE_API_KEY"]
    assert created and path.read_text() == key and len(key) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.delenv("PRODTUNE_API_KEY")
    assert ensure_api_key(tmp_path / "home") == (path, False) and os.environ["PRODTUNE_API_KEY"] == key
    monkeypatch.setenv("PRODTUNE_API_KEY", "explicit")
    ensure_api_key(tmp_path / "home")
    assert os.environ["PRODTUNE_API_KEY"] == "explicit"


def test_tables_are_not_cut_in_a_pipe(monkeypatch) -> None:
    import io

    from rich.table import Table

    from pipelines.console import make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()  # pytest's stdout is not a terminal
    long_name = "prodtune-describer-with-a-very-long-registered-model-name-" + "x" * 80
    table = Table("model", "uri")
    table.add_row(long_name, "s3://prodtune/models/describer/" + "y" * 60 + "/prodtune-describer-Q4_K_M.gguf")
    console.file = io.StringIO()
    console.print(table)
    out = console.file.getvalue()
    assert long_name in out and "prodtune-describer-Q4_K_M.gguf" in out
