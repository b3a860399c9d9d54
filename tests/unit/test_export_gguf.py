"""Real export of SmolLM2-135M-Instruct: GGUF conversion, quantization, generation, fidelity gate.

Slow (conversion + HF and llama.cpp inference on 2 cores, ~2-3 min; the first run also materializes
the HF model from the cached GGUF). Needs the cached SmolLM2 GGUF, the llama-cpp-python sdist and
the installed binding; skips with the reason when one is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HOME_CACHE = Path(os.environ.get("PRODTUNE_CACHE", Path.home() / ".cache" / "prodtune"))
TEST_CACHE = Path(os.environ.get("PRODTUNE_TEST_CACHE", "/tmp/prodtune-test-cache"))
SMOL_GGUF = HOME_CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SDISTS = [
    HOME_CACHE / "sdist" / "llama_cpp_python-0.3.36.tar.gz",
    Path("/tmp/llb/sdist/llama_cpp_python-0.3.36.tar.gz"),
]


def smollm2_hf_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain HF dir: the fine-tune step's copy, else our own cached one."""
    shared = HOME_CACHE / "models" / "smollm2-135m-instruct"
    if (shared / ".materialized").is_file():
        return shared
    out = TEST_CACHE / "smollm2-135m-instruct"
    if (out / "config.json").is_file():
        return out
    if not SMOL_GGUF.is_file():
        pytest.skip(f"{SMOL_GGUF} missing (scripts/setup.sh fetches it)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SMOL_GGUF.parent), gguf_file=SMOL_GGUF.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(SMOL_GGUF.parent), gguf_file=SMOL_GGUF.name, dtype=torch.float32
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-smollm2.", dir=out.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def sdist_path() -> Path:
    for path in SDISTS:
        if path.is_file():
            return path
    pytest.skip("llama-cpp-python 0.3.36 sdist not found")


def make_model_dir(root: Path, task: str, hf_dir: Path) -> Path:
    """A fine-tune output dir around an HF model (the base itself stands in for the merged model)."""
    from transformers import AutoTokenizer

    from components.common.chat_format import describer_messages, qa_messages

    model_dir = root / f"finetune-{task}"
    (model_dir / "adapter").mkdir(parents=True)
    (model_dir / "merged").symlink_to(hf_dir, target_is_directory=True)
    # A stand-in adapter: the registry uploads whatever adapter/ holds.
    (model_dir / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    summary = {
        "task": task,
        "base_model": str(hf_dir),
        "chat_template": tok.chat_template,
        "eos_tokens": [tok.eos_token],
    }
    (model_dir / "finetune-summary.json").write_text(json.dumps(summary))
    (model_dir / "eval.json").write_text(
        json.dumps({"base": {"loss": 2.5}, "finetuned": {"loss": 2.1}, "n_eval": 4})
    )
    if task == "describer":
        examples = [
            describer_messages("Wireless Mouse, Black", "A compact wireless mouse with a silent click.")
        ]
    else:
        examples = [
            qa_messages("Is it waterproof?", [("Rain Jacket", "Waterproof shell.")], "Yes, it is waterproof.")
        ]
    (model_dir / "eval-examples.jsonl").write_text(
        "\n".join(json.dumps({"messages": m}) for m in examples) + "\n"
    )
    return model_dir


def test_config(tools_dir: Path, **overrides):
    from components.export.core import ExportConfig, FidelityConfig
    from components.export.gate import GateConfig

    base = {
        "sdist_path": sdist_path(),
        "tools_dir": tools_dir,
        "threads": 2,
        "n_ctx": 512,
        "speed_tokens": 16,
        "fidelity": FidelityConfig(n_tokens=16),
        # one held-out example in these fixtures; the decision logic is tested in test_export_gate.py
        "gate": GateConfig(min_examples=1, max_new_tokens=16, bootstrap_samples=200, cache_dir=None),
        "publish": False,
    }
    return ExportConfig(**{**base, **overrides})


test_config.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("llama_cpp")
    hf = smollm2_hf_dir()
    root = tmp_path_factory.mktemp("export")
    from components.export.core import run_export

    model_dir = make_model_dir(root, "describer", hf)
    summary = run_export(model_dir, root / "out", test_config(TEST_CACHE / "llama.cpp-0.3.36"))
    return root / "out", summary


def test_export_writes_every_level_and_passes_the_gate(exported) -> None:
    out, summary = exported
    assert summary["fidelity"]["passed"], summary["fidelity"]
    assert set(summary["levels"]) == {"F16", "Q4_K_M", "Q8_0"}
    sizes = {k: v["size_bytes"] for k, v in summary["levels"].items()}
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q4_K_M"] > 0
    for level, row in summary["levels"].items():
        assert (out / row["file"]).is_file()
        assert 1.0 < row["perplexity"] < 1000.0, level
        assert row["tokens_per_s"] > 0
        assert row["prompt_tokens_match"] is True
    assert summary["levels"]["F16"]["perplexity_delta_pct"] == 0.0
    assert json.loads((out / "export-summary.json").read_text())["task"] == "describer"
    assert summary["registry"] == {"skipped": "register disabled or MLFLOW_TRACKING_URI unset"}


def test_modelfile_points_at_served_level_with_all_stops(exported) -> None:
    from components.common.chat_format import DESCRIBER_SYSTEM
    from components.export.modelfile import parse_modelfile

    out, summary = exported
    mf = parse_modelfile((out / "Modelfile").read_text())
    assert mf.from_ == f"./{summary['files']['Q4_K_M']}"
    assert mf.stops == ["<|im_end|>", "<|endoftext|>"]
    # The prompt the describer was trained with, not the base model's default system prompt.
    assert mf.system == DESCRIBER_SYSTEM
    assert mf.parameters == {"temperature": 0.7, "num_ctx": 2048}


def test_eval_gate_never_promotes_a_copy_of_the_base(exported) -> None:
    out, summary = exported
    gate = summary["eval_gate"]
    # The stand-in "fine-tune" is the base itself, scored the same way on the served quant: every
    # paired difference is 0, so the lower bound cannot clear even margin 0 (it used to "pass").
    assert gate["n"] == 1 and gate["level"] == "Q4_K_M" and gate["against"] == "base"
    assert gate["finetuned"] == pytest.approx(gate["base"], abs=1e-9)
    for row in gate["rows"].values():
        assert row["mean"] == pytest.approx(0.0, abs=1e-9) and row["low"] == pytest.approx(0.0, abs=1e-9)
    assert gate["passed"] is False and "does not clear the margin" in gate["reason"]
    assert (out / "gate-report.md").is_file() and (out / "gate.png").is_file()


def test_the_reference_side_is_scored_once_per_content_key(exported, tmp_path: Path, monkeypatch) -> None:
    """Caching the base side changes no number; new examples or a new base are a miss."""
    from components.export import gate as gate_module
    from components.export.core import eval_gate
    from components.export.gate import GateConfig

    out, summary = exported
    model_dir = out.parent / "finetune-describer"
    ft = json.loads((model_dir / "finetune-summary.json").read_text())
    served = out / summary["files"]["Q4_K_M"]
    cfg = test_config(TEST_CACHE / "llama.cpp-0.3.36")
    cfg = cfg.model_copy(
        update={"gate": GateConfig(**{**cfg.gate.model_dump(), "cache_dir": tmp_path / "cache"})}
    )
    built: list[Path] = []
    real_base, real_gate_base = gate_module.base_for_gate, gate_module.gate_base
    monkeypatch.setattr(gate_module, "base_for_gate", lambda w, d: built.append(d) or real_base(w, d))

    def run(work: str) -> dict:
        (tmp_path / work).mkdir()
        return eval_gate(model_dir, ft, served, out / "Modelfile", tmp_path / work, cfg)

    first, second = run("a"), run("b")
    assert first["reference_cached"] is False and second["reference_cached"] is True
    assert len(built) == 1  # the hit built no base GGUF
    assert second["rows"] == first["rows"] and second["rows"] == summary["eval_gate"]["rows"]
    assert json.loads((tmp_path / "b" / "gate.json").read_text())["reference_cached"] is True
    assert "came from the gate cache" in (tmp_path / "b" / "gate-report.md").read_text()

    examples = model_dir / "eval-examples.jsonl"
    convo = json.loads(examples.read_text())["messages"]
    convo[-1]["content"] += " It pairs over Bluetooth."
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"messages": convo}) + "\n")
    cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"examples_path": other})})
    assert run("c")["reference_cached"] is False and len(built) == 2
    # another base (one more file in its directory) is another key
    monkeypatch.setattr(
        gate_module,
        "gate_base",
        lambda s, **kw: dataclasses.replace(real_gate_base(s, **kw), files={"x": "0"}),
    )
    assert run("d")["reference_cached"] is False


def test_quantized_gguf_loads_and_generates(exported) -> None:
    import llama_cpp

    out, summary = exported
    llm = llama_cpp.Llama(model_path=str(out / summary["files"]["Q4_K_M"]), n_ctx=256, verbose=False, seed=0)
    try:
        reply = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=12, temperature=0.0
        )
    finally:
        llm.close()
    text = reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] > 0
    assert text.strip()


def _gate(out: Path, files: dict[str, Path], training_template: str | None = None) -> dict:
    from transformers import AutoTokenizer

    from components.export.core import run_fidelity_gate
    from components.export.fidelity import default_golden

    hf = smollm2_hf_dir()
    tok = AutoTokenizer.from_pretrained(str(hf))
    cfg = test_config(TEST_CACHE / "llama.cpp-0.3.36")
    return run_fidelity_gate(
        hf, tok, training_template or tok.chat_template, out / "Modelfile", files, default_golden("qa"), cfg
    )


def test_gate_fails_on_gguf_with_altered_embedded_template(exported, tmp_path: Path) -> None:
    from components.export.gguf import ensure_converter, set_chat_template

    out, summary = exported
    tools = ensure_converter(TEST_CACHE / "llama.cpp-0.3.36", sdist_path())
    # Same ChatML markers, but the system turn is dropped: subtle, and exactly what breaks serving.
    altered = (
        "{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}<|im_start|>assistant\n"
    )
    bad = set_chat_template(out / summary["files"]["Q8_0"], tmp_path / "bad.gguf", altered, tools)
    shutil.copy(out / "Modelfile", tmp_path / "Modelfile")
    result = _gate(tmp_path, {"F16": out / summary["files"]["F16"], "Q8_0": bad})
    assert result["fidelity"]["passed"] is False
    assert "gguf:Q8_0" in result["fidelity"]["reason"]
    assert "gguf:F16" not in result["fidelity"]["reason"]


def test_gate_fails_on_modelfile_with_llama3_template(exported, tmp_path: Path) -> None:
    from components.common.chat_families import LLAMA3
    from components.export.modelfile import parse_modelfile

    out, summary = exported
    mf = parse_modelfile((out / "Modelfile").read_text())
    mf.template = LLAMA3.go_template("")
    (tmp_path / "Modelfile").write_text(mf.render())
    result = _gate(tmp_path, {"F16": out / summary["files"]["F16"]})
    assert result["fidelity"]["passed"] is False
    assert "modelfile != training" in result["fidelity"]["reason"]


def test_gate_fails_when_training_template_differs_from_the_tokenizer(exported) -> None:
    out, summary = exported
    trained_with = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    result = _gate(out, {"F16": out / summary["files"]["F16"]}, training_template=trained_with)
    assert result["fidelity"]["passed"] is False
    # Golden conversation 4 has no system turn: only there the default system prompt differs.
    assert "conversation 4" in result["fidelity"]["reason"]


def test_greedy_and_forced_scores_from_one_prompt_evaluation() -> None:
    """The greedy tokens' cache is dropped before the forced tokens: their logits are the ones a
    single evaluation of prompt + forced gives (up to batch-size rounding), never a continuation of
    the greedy text."""
    pytest.importorskip("llama_cpp")
    if not SMOL_GGUF.is_file():
        pytest.skip(f"{SMOL_GGUF} missing (scripts/setup.sh fetches it)")

    from components.export.gguf import GGUFRunner, summed_nll

    runner = GGUFRunner(SMOL_GGUF, n_ctx=256, threads=2)
    try:
        prompt = runner.tokenize(
            "<|im_start|>user\nDescribe a red wool scarf.<|im_end|>\n<|im_start|>assistant\n"
        )
        forced = runner.tokenize(
            "A warm scarf knitted from soft red wool, long enough to wrap twice.", add_bos=False
        )
        free, rows = runner.greedy_and_forced(prompt, 12, set(), forced)
        assert free == runner.greedy(prompt, 12, set()) and len(free) == 12
        assert free[: len(forced)] != forced  # the model's own text differs: a leaked cache would show
        assert rows.shape == (len(forced), runner.llm.n_vocab())
        whole = runner.logits([*prompt, *forced])[len(prompt) - 1 : len(prompt) + len(forced) - 1]
        assert (rows.argmax(axis=1) == whole.argmax(axis=1)).mean() >= 0.9
        one_pass, n = runner.nll([*prompt, *forced], start=len(prompt))
        assert n == len(forced)
        assert abs(summed_nll(rows, forced) - one_pass) / n < 0.05
    finally:
        runner.close()


def test_summed_nll_is_the_log_softmax_of_the_targets() -> None:
    import numpy as np

    from components.export.gguf import summed_nll

    rows = np.random.default_rng(0).normal(scale=8.0, size=(5, 1000)).astype(np.float32)
    targets = [3, 999, 0, 500, 7]
    log_softmax = rows.astype(np.float64) - np.logaddexp.reduce(
        rows.astype(np.float64), axis=1, keepdims=True
    )
    assert summed_nll(rows, targets) == pytest.approx(-log_softmax[np.arange(5), targets].sum(), rel=1e-9)
