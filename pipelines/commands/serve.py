"""`prodtune serve`: the OpenAI-compatible API (uvicorn) and, with --ui, the Streamlit RAG UI.

Models come from the MLflow registry alias (`PRODTUNE_LLM_*`, see serving/llm/resolve.py); the API
key from `PRODTUNE_API_KEY`. The API answers /healthz at once and /readyz once models are loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

UI_SCRIPT = Path(__file__).resolve().parents[2] / "serving" / "ui" / "rag.py"


def ui_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(UI_SCRIPT),
        "--server.headless", "true", "--server.address", host, "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def start_ui(host: str, port: int, api_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PRODTUNE_API_URL": api_url}  # the key is already in the environment
    return subprocess.Popen(ui_command(host, port), env=env)


def ensure_api_key(home: Path) -> tuple[Path, bool]:
    """PRODTUNE_API_KEY from the env, else from `home/api-key` (created, 0600, on first use).
    Returns (key file, created now); the key is put into this process's environment."""
    import secrets

    key_file = Path(home) / "api-key"
    if os.environ.get("PRODTUNE_API_KEY"):
        return key_file, False
    created = not key_file.is_file()
    if created:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    os.environ["PRODTUNE_API_KEY"] = key_file.read_text().strip()
    return key_file, created


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def serve(
    host: Annotated[str, typer.Option(help="Address the API binds to.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Also start the Streamlit UI.")] = False,
    ui_port: Annotated[int, typer.Option(help="UI port.")] = 8501,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the two models behind the router: OpenAI-compatible API, optionally the UI."""
    import uvicorn

    from components.common.settings import get_settings
    from serving.api.app import create_app
    from serving.api.runtime import build_responder
    from serving.llm.resolve import LlmSettings

    had_key = bool(os.environ.get("PRODTUNE_API_KEY"))
    key_file, created = ensure_api_key(get_settings().home)
    if not had_key:
        state = "created" if created else "from"
        typer.echo(f"API key: {state} {key_file}  (clients: export PRODTUNE_API_KEY=$(cat {key_file}))")
    llm = LlmSettings()
    info: dict[str, dict[str, object]] = {}  # filled by the loader, shown in /v1/models
    app = create_app(loader=lambda: build_responder(llm, info), model_info=info)  # no key: exit 2
    api_url = f"http://{_local(host)}:{port}"
    ui_proc = start_ui(host, ui_port, api_url) if ui else None
    typer.echo(
        f"API: {api_url}  (OpenAI base URL {api_url}/v1; health {api_url}/healthz, ready {api_url}/readyz)"
    )
    if ui_proc is not None:
        typer.echo(f"UI:  http://{_local(host)}:{ui_port}")
    typer.echo(
        f"models: {llm.backend}, alias '{llm.alias}' (loading in the background; /readyz turns 200 when done)"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        if ui_proc is not None:
            ui_proc.terminate()
            try:
                ui_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ui_proc.kill()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
