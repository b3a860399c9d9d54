"""`prodtune services ...` commands that need no running server."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from typer.testing import CliRunner

from pipelines.commands import services
from pipelines.embedded.stack import EmbeddedStack


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    services.register(app)
    return app


def _exports(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        pairs[name] = value
    return pairs


def test_env_hides_secrets_unless_asked(tmp_path: Path) -> None:
    runner = CliRunner()
    expected = EmbeddedStack.load(tmp_path).env()

    plain = runner.invoke(_app(), ["services", "env", "--home", str(tmp_path)])
    assert plain.exit_code == 0, plain.output
    shown = _exports(plain.stdout)
    assert "AWS_SECRET_ACCESS_KEY" not in shown and "AWS_ACCESS_KEY_ID" not in shown
    assert expected["AWS_SECRET_ACCESS_KEY"] not in plain.output
    assert shown["MLFLOW_TRACKING_URI"] == expected["MLFLOW_TRACKING_URI"]

    full = runner.invoke(_app(), ["services", "env", "--home", str(tmp_path), "--show-secrets"])
    assert full.exit_code == 0, full.output
    assert _exports(full.stdout) == expected


def test_status_of_stopped_stack_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["services", "status", "--home", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert '"running": false' in result.stdout
