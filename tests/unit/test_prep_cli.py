"""`prodtune gen-data` and `prodtune prep` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from components.common.errors import InputError
from pipelines.commands import prep as prep_commands


@pytest.fixture
def app() -> typer.Typer:
    # A fresh app with only our commands (pipelines.cli registers every area's module).
    app = typer.Typer()
    prep_commands.register(app)
    return app


def test_gen_data_then_prep(app: typer.Typer, tmp_path: Path) -> None:
    # wide, whatever COLUMNS an earlier test left: the count must not wrap (failed once in a full run)
    runner = CliRunner(env={"COLUMNS": "1000"})
    data = tmp_path / "trn.json.gz"
    result = runner.invoke(app, ["gen-data", "--output", str(data), "--lines", "400", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert data.read_bytes()[:2] == b"\x1f\x8b"

    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "prep",
            "--input",
            str(data),
            "--output-dir",
            str(out),
            "--min-content-chars",
            "150",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "prep-summary.json").read_text(encoding="utf-8"))
    assert summary["lines_read"] == 400
    assert f"{summary['kept']:,}" in result.output and "short_content" in result.output
    df = pd.read_csv(out / "trn-processed.csv", dtype={"uid": str})
    assert len(df) == summary["kept"] and df["content"].str.len().min() >= 150


def test_prep_config_file(app: typer.Typer, tmp_path: Path) -> None:
    data = tmp_path / "trn.json"
    line = {"uid": "1", "title": "T", "content": "x" * 30}
    data.write_text(json.dumps(line) + "\n", encoding="utf-8")
    cfg = tmp_path / "prep.yaml"
    cfg.write_text("min_content_chars: 20\nwrite_csv: false\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["prep", "-i", str(data), "-o", str(out), "--config", str(cfg), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert not (out / "trn-processed.csv").exists() and (out / "trn-processed.parquet").exists()


def test_prep_bad_input_raises_input_error(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "trn.csv"
    bad.write_text("uid,title,content\n1,a,b\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["prep", "-i", str(bad), "-o", str(tmp_path / "out"), "--no-progress"])
    # pipelines.cli.main turns InputError into one line on stderr and exit status 2.
    assert isinstance(result.exception, InputError)
    assert str(bad) in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_prep_unknown_config_key_is_an_error(app: typer.Typer, tmp_path: Path) -> None:
    cfg = tmp_path / "prep.yaml"
    cfg.write_text("min_content_chars: 10\nmin_contnet_chars: 5\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["prep", "-i", "x", "-o", str(tmp_path / "o"), "--config", str(cfg)])
    assert isinstance(result.exception, InputError) and "min_contnet_chars" in str(result.exception)
