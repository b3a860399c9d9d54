"""Export config, input validation, metrics flattening and the CLI's error paths (no model needed)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from components.common.config import default_config_path, load_config
from components.common.errors import InputError
from components.export.core import ExportConfig, read_conversations, read_model_dir
from components.export.gguf import ensure_converter, quantize
from components.export.registry import _flat_metrics, model_name


def test_shipped_config_loads_with_defaults_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRODTUNE_CACHE", str(tmp_path))
    cfg = load_config(ExportConfig, default_config_path("export"))
    assert cfg.quant_levels == ["Q4_K_M", "Q8_0"] and cfg.serve_level == "Q4_K_M"
    assert cfg.sdist_path == tmp_path / "sdist" / "llama_cpp_python-0.3.36.tar.gz"
    assert cfg.fidelity.min_token_agreement["F16"] >= cfg.fidelity.min_token_agreement["Q4_K_M"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quant_levels": ["Q3_XYZ"]}, "unknown quant levels"),
        ({"serve_level": "Q6_K"}, "serve_level"),
        ({"num_ctx": 0}, "num_ctx"),
        ({"typo_key": 1}, "typo_key"),
    ],
)
def test_bad_config_is_an_input_error(overrides: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        load_config(ExportConfig, None, overrides)
    assert field in str(err.value)


def _model_dir(tmp_path: Path, summary: dict | str | None) -> Path:
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "config.json").write_text("{}")
    if summary is not None:
        text = summary if isinstance(summary, str) else json.dumps(summary)
        (tmp_path / "finetune-summary.json").write_text(text)
    return tmp_path


def test_read_model_dir_accepts_the_contract(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, {"task": "qa", "base_model": "/b"})
    (d / "eval.json").write_text('{"base": {"loss": 2}, "finetuned": {"loss": 1}, "n_eval": 3}')
    merged, summary, evals = read_model_dir(d)
    assert merged == d / "merged" and summary["task"] == "qa" and evals["n_eval"] == 3


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        (None, "finetune-summary.json missing"),
        ({"task": "poetry"}, "task must be"),
        ("{oops", "invalid JSON"),
    ],
)
def test_read_model_dir_rejects_bad_input(tmp_path: Path, summary, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_model_dir(_model_dir(tmp_path, summary))


def test_read_model_dir_needs_merged(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="merged"):
        read_model_dir(tmp_path)


def test_read_conversations_reports_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "golden.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n\n{"messages": []}\n')
    with pytest.raises(InputError) as err:
        read_conversations(path)
    assert err.value.line == 3
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert read_conversations(path) == [[{"role": "user", "content": "hi"}]]


def test_ensure_converter_extracts_only_the_tools_once(tmp_path: Path) -> None:
    # A fake sdist with the real layout: the converter, its package, gguf-py, and unrelated files.
    src = tmp_path / "src" / "llama_cpp_python-0.3.36"
    for rel in (
        "vendor/llama.cpp/convert_hf_to_gguf.py",
        "vendor/llama.cpp/conversion/__init__.py",
        "vendor/llama.cpp/gguf-py/gguf/__init__.py",
        "vendor/llama.cpp/ggml/src/big.c",
        "llama_cpp/x.py",
    ):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(f"# {rel}\n")
    sdist = tmp_path / "llama.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    tools = ensure_converter(tmp_path / "tools", sdist)
    assert sorted(p.name for p in tools.iterdir()) == [
        ".extracted",
        "conversion",
        "convert_hf_to_gguf.py",
        "gguf-py",
    ]
    sdist.unlink()  # second call must not need the sdist
    assert ensure_converter(tmp_path / "tools", sdist) == tools


def test_ensure_converter_without_sdist_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sdist not found"):
        ensure_converter(tmp_path / "tools", tmp_path / "missing.tar.gz")


def test_unknown_quant_level_is_rejected(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    with pytest.raises(InputError, match="unknown quant level"):
        quantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "Q1_FANTASY")


def test_model_names_and_metrics() -> None:
    assert model_name("qa") == "prodtune-qa" and model_name("describer") == "prodtune-describer"
    with pytest.raises(InputError):
        model_name("chat")
    summary = {
        "levels": {"Q8_0": {"size_bytes": 10, "perplexity": 5.5, "tokens_per_s": 9.0, "samples": []}},
        "eval_gate": {"base": 2.0, "finetuned": 1.5, "improvement": 0.5, "passed": True},
        "finetune_eval": {"base": {"loss": 2.2}, "finetuned": {"loss": 1.9}, "n_eval": 4},
    }
    assert _flat_metrics(summary) == {
        "Q8_0.size_bytes": 10.0,
        "Q8_0.perplexity": 5.5,
        "Q8_0.tokens_per_s": 9.0,
        "gate.base": 2.0,
        "gate.finetuned": 1.5,
        "gate.improvement": 0.5,
        "gate.passed": 1.0,
        "finetune_eval.base.loss": 2.2,
        "finetune_eval.finetuned.loss": 1.9,
    }


def test_cli_export_surfaces_input_errors(tmp_path: Path) -> None:
    from pipelines.commands.export import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["export", "--model-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]
    )
    # pipelines.cli.main turns InputError into one line + exit 2; here it propagates unchanged.
    assert isinstance(result.exception, InputError)
    assert "merged" in str(result.exception)
    assert sorted(c.name for c in app.registered_commands) == ["export", "promote"]
    assert [g.name for g in app.registered_groups] == ["models"]  # `models` lists, `models stage` stages


def test_champion_moves_only_if_the_gate_passed_against_the_current_champion() -> None:
    from mlflow.exceptions import MlflowException

    from components.export.registry import _champion_move

    class Client:  # the two calls _champion_move makes, on a fixed alias table
        def __init__(self, champion: str | None) -> None:
            self.champion = champion

        def get_model_version_by_alias(self, name: str, alias: str):
            if self.champion is None:
                raise MlflowException("no alias")
            return type("MV", (), {"version": self.champion})()

    passed_vs_base = {"passed": True}
    passed_vs_v2 = {"passed": True, "champion_version": "2"}
    assert _champion_move(Client(None), "m", passed_vs_base) is None
    assert _champion_move(Client("2"), "m", passed_vs_v2) is None
    assert "gate failed" in _champion_move(Client("2"), "m", {"passed": False, "reason": "x"})
    # Another export moved champion to v3 while this gate compared against v2 (or the base).
    assert "champion is v3 now" in _champion_move(Client("3"), "m", passed_vs_v2)
    assert "champion is v3 now" in _champion_move(Client("3"), "m", passed_vs_base)


def test_gate_without_base_weights_fails_with_the_reason_but_does_not_crash(
    tmp_path: Path, monkeypatch
) -> None:
    from components.export.core import eval_gate

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model_dir = tmp_path / "ft"
    model_dir.mkdir()
    convo = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    (model_dir / "eval-examples.jsonl").write_text(json.dumps({"messages": convo}) + "\n")
    (tmp_path / "Modelfile").write_text("FROM ./x.gguf\n")
    summary = {"task": "qa", "base_model": str(tmp_path / "gone")}
    gate = eval_gate(
        model_dir, summary, tmp_path / "x.gguf", tmp_path / "Modelfile", tmp_path, ExportConfig()
    )
    assert (
        gate["passed"] is False and str(tmp_path / "gone") in gate["reason"] and gate["metric"] == "token_f1"
    )
