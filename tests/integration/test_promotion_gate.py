"""Promotion gate against a real champion: SeaweedFS + MLflow, real exports of SmolLM2-135M variants.

Three "fine-tunes" of known, ordered quality: the clean SmolLM2, a lightly noised copy and a
heavily noised copy (Gaussian noise on every linear weight, seeded). The held-out references are
the clean model's own greedy answers (made with the gate's own scorer), so clean > light > heavy
on ROUGE-L and on reference NLL by construction. Then, with the real registry:

1. light, no champion yet, base = heavy: better than the base  -> champion = v1;
2. heavy vs champion v1 (downloaded from S3): worse            -> champion stays v1;
3. clean vs champion v1: better                                -> champion moves to v3.

Each export is the real `run_export` (F16 only, to keep it to ~1 min each on 2 cores).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TITLES = [
    "Stainless Steel Water Bottle 750ml",
    "Wireless Bluetooth Headphones, Black",
    "Organic Green Tea, 100 Bags",
    "Kids Rain Boots Size 10",
    "LED Desk Lamp with USB Charging Port",
    "Cast Iron Skillet 12 Inch",
    "Yoga Mat Non-Slip 6mm",
    "Men's Leather Wallet Brown",
    "Ceramic Coffee Mug Set of 4",
    "Portable Phone Charger 10000mAh",
    "Cotton Bath Towels, White, 2 Pack",
    "Acoustic Guitar Strings Light Gauge",
]


@pytest.fixture(scope="module")
def helpers():
    path = Path(__file__).resolve().parents[1] / "unit" / "test_export_gguf.py"
    spec = importlib.util.spec_from_file_location("_export_gguf_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _noised(clean: Path, out: Path, scale: float, seed: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(clean), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "embed" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * scale)
    model.to(torch.float16).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(clean)).save_pretrained(str(out))
    return out


def _config(helpers, root: Path, **gate):
    from components.export.core import FidelityConfig
    from components.export.fidelity import default_golden
    from components.export.gate import GateConfig

    golden = root / "golden.jsonl"
    golden.write_text(json.dumps({"messages": default_golden("describer")[0]}) + "\n")
    return helpers.test_config(
        helpers.TEST_CACHE / "llama.cpp-0.3.36",
        quant_levels=[],
        serve_level="F16",
        threads=1,  # llama.cpp's thread barriers spin badly on a busy 2-core machine
        publish=True,
        # Noise does not change conversion fidelity, but argmax ties on noised weights can: loose.
        fidelity=FidelityConfig(
            n_tokens=8, golden_path=golden, min_token_agreement={"F16": 0.5}, min_prefix_match={"F16": 0.0}
        ),
        gate=GateConfig(min_examples=len(TITLES), max_new_tokens=24, bootstrap_samples=1000, **gate),
    )


def _model_dir(helpers, root: Path, name: str, merged: Path, base: Path, examples: Path) -> Path:
    model_dir = helpers.make_model_dir(root / name, "describer", merged)
    summary = json.loads((model_dir / "finetune-summary.json").read_text())
    summary["base_model"] = str(base)
    (model_dir / "finetune-summary.json").write_text(json.dumps(summary))
    (model_dir / "eval-examples.jsonl").write_text(examples.read_text())
    return model_dir


def _references(helpers, root: Path, clean: Path, config) -> Path:
    """Held-out conversations whose reference answers are the clean model's greedy outputs."""
    from transformers import AutoTokenizer

    from components.common.chat_format import describer_messages
    from components.export import fidelity
    from components.export.core import export_gguf
    from components.export.gate import score_gguf
    from components.export.modelfile import build_modelfile

    gguf = export_gguf(clean, root / "ref", "ref", config)["F16"]
    tok = AutoTokenizer.from_pretrained(str(clean))
    mf = build_modelfile(
        gguf.name,
        tok.chat_template,
        eos_tokens=[tok.eos_token],
        vocab=tok.get_vocab().keys(),
        parameters={},
        bos_token=tok.bos_token or "",
        eos_token=tok.eos_token or "",
    )
    prompts = [describer_messages(t) for t in TITLES]
    scores = score_gguf(
        gguf,
        lambda m: fidelity.ollama_render(mf, m),
        mf.stops,
        [[*p, {"role": "assistant", "content": ""}] for p in prompts],
        "describer",
        label="ref",
        max_new_tokens=24,
        n_ctx=512,
        threads=1,
    )
    path = root / "eval-examples.jsonl"
    path.write_text(
        "".join(
            json.dumps({"messages": describer_messages(t, out or "(empty)")}) + "\n"
            for t, out in zip(TITLES, scores.outputs, strict=True)
        )
    )
    return path


def test_champion_moves_only_for_a_better_candidate(helpers, stack_env, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from components.export import registry
    from components.export.core import run_export

    client = MlflowClient(stack_env["MLFLOW_TRACKING_URI"])
    # The session's registry may hold a describer champion from another test: start without one.
    with contextlib.suppress(MlflowException):
        client.delete_registered_model_alias("prodtune-describer", "champion")
    clean = helpers.smollm2_hf_dir()
    light = _noised(clean, tmp_path / "light", 0.04, seed=1)
    heavy = _noised(clean, tmp_path / "heavy", 0.25, seed=2)
    config = _config(helpers, tmp_path)
    examples = _references(helpers, tmp_path, clean, config)

    def export(name: str, merged: Path, base: Path) -> dict:
        model_dir = _model_dir(helpers, tmp_path, name, merged, base, examples)
        return run_export(model_dir, tmp_path / f"out-{name}", config)

    first = export("v-light", light, base=heavy)
    assert first["eval_gate"]["against"] == "base", first["eval_gate"]
    assert first["eval_gate"]["passed"] is True, first["eval_gate"]["reason"]
    v1 = first["registry"]["version"]
    assert first["registry"]["aliases"] == ["candidate", "champion"]

    worse = export("v-heavy", heavy, base=clean)
    gate = worse["eval_gate"]
    assert gate["against"] == "champion" and gate["champion_version"] == v1
    assert gate["passed"] is False and gate["rows"]["rouge_l"]["high"] < 0, gate
    assert worse["registry"]["aliases"] == ["candidate"]
    assert registry.resolve("describer", "champion")["version"] == v1  # champion did not move
    assert registry.resolve("describer", "candidate")["version"] == worse["registry"]["version"]

    better = export("v-clean", clean, base=heavy)
    gate = better["eval_gate"]
    assert gate["against"] == "champion" and gate["champion_version"] == v1
    assert gate["passed"] is True, gate["reason"]
    assert gate["rows"]["rouge_l"]["low"] > 0 and gate["rows"]["ref_nll"]["low"] > 0
    v3 = better["registry"]["version"]
    assert registry.resolve("describer", "champion")["version"] == v3

    # The gate report (table + plot) is in the export run on MLflow.
    names = {a.path for a in client.list_artifacts(better["registry"]["run_id"], "gate")}
    assert {"gate/gate-report.md", "gate/gate.png", "gate/gate.json"} <= names
    metrics = client.get_run(better["registry"]["run_id"]).data.metrics
    assert metrics["gate.passed"] == 1.0 and metrics["gate.rouge_l.low"] > 0
