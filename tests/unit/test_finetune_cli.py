"""`prodtune finetune` / `prodtune assets materialize` wiring, and the KFP component's interface."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from components.common.errors import InputError
from pipelines.commands.finetune import register


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_commands_are_registered(app: typer.Typer) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["finetune", "--help"]).output
    for flag in ("--config", "--train", "--eval", "--output-dir", "--max-steps"):
        assert flag in out
    assert "--gguf" in runner.invoke(app, ["assets", "materialize", "--help"]).output


def test_bad_config_is_an_input_error_naming_the_field(app: typer.Typer, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("task: qa\nbase_model: /m\nmax_steps: 3\nlora:\n  r: -1\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["finetune", "--config", str(cfg), "--train", "t.jsonl", "--output-dir", str(tmp_path / "o")]
    )
    assert isinstance(result.exception, InputError)  # pipelines.cli.main prints it on one line, exit 2
    assert result.exception.field == "lora.r"


def test_missing_base_model_is_reported_before_training(app: typer.Typer, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: qa\nbase_model: /m\nmax_steps: 3\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["finetune", "--config", str(cfg), "--train", "t.jsonl", "--output-dir", str(tmp_path / "o"),
         "--base-model", str(tmp_path / "nowhere")],
    )  # fmt: skip
    assert isinstance(result.exception, InputError) and result.exception.field == "base_model"
    assert str(tmp_path / "nowhere") in str(result.exception)
    assert not (tmp_path / "o").exists()


def test_materialize_missing_gguf(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["assets", "materialize", "--gguf", str(tmp_path / "x.gguf"), "--output", str(tmp_path / "m")]
    )
    assert isinstance(result.exception, InputError) and "GGUF" in str(result.exception)


def test_materialize_module_is_idempotent(tmp_path: Path) -> None:
    from components.finetune.materialize import MARKER, main

    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / MARKER).write_text("done")
    # already materialized: returns without needing the GGUF at all
    assert main(["--gguf", str(tmp_path / "absent.gguf"), "--output", str(out)]) == 0
    assert main(["--gguf", str(tmp_path / "absent.gguf"), "--output", str(tmp_path / "new")]) == 2


def test_component_interface(tmp_path: Path) -> None:
    import yaml
    from kfp import compiler

    from components.common.images import TRAIN_GPU_IMAGE
    from components.finetune.component import finetune

    path = tmp_path / "c.yaml"
    compiler.Compiler().compile(finetune, str(path))
    spec = yaml.safe_load(path.read_text())
    inputs = spec["root"]["inputDefinitions"]
    assert set(inputs["artifacts"]) == {"dataset"}
    assert {"config_json", "checkpoint_uri", "run_id", "keep_checkpoints"} == set(inputs["parameters"])
    assert set(spec["root"]["outputDefinitions"]["artifacts"]) == {"model"}
    executor = next(iter(spec["deploymentSpec"]["executors"].values()))
    assert executor["container"]["image"] == TRAIN_GPU_IMAGE
    assert len(Path("components/finetune/component.py").read_text().splitlines()) <= 40
