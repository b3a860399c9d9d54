"""The training function on CUDA with Unsloth: real SmolLM2 learns; a production-shaped QLoRA fits 16 GiB.

Run on the GPU host (docs/gpu.md): `source scripts/gpu/bootstrap.sh && pytest -m gpu tests/gpu`.
Skipped without CUDA or Unsloth. The shaped test builds the random-weight Llama-3.2-3B shape under
$PRODTUNE_GPU_WORK (reused if the benchmark built it) and needs $PRODTUNE_GPU_TOKENIZER (SmolLM2's tokenizer).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="needs unsloth (scripts/gpu)"),
]


@pytest.fixture(scope="module")
def smol() -> Path:
    from components.finetune.materialize import DEFAULT_GGUF, DEFAULT_OUTPUT, is_materialized, materialize

    if not is_materialized(DEFAULT_OUTPUT) and not DEFAULT_GGUF.is_file():
        pytest.skip(f"SmolLM2 GGUF not found at {DEFAULT_GGUF}")
    return materialize(DEFAULT_GGUF, DEFAULT_OUTPUT)


def test_unsloth_trains_real_smollm2_loss_goes_down_and_lora_changes(smol: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from benchmarks.finetune_gpu.data import describer_rows, write_jsonl
    from benchmarks.finetune_gpu.run import production_config
    from components.finetune.core import run_finetune

    # Production describer recipe (seq 1024, batch 2 x accum 4, QLoRA r16, Unsloth); a loss every step.
    config = production_config("describer.yaml", smol, "unsloth", 24, 0, logging_steps=1)
    train = write_jsonl(tmp_path / "describer-train.jsonl", describer_rows(200))
    result = run_finetune(config, train, None, tmp_path / "ft", resume=False)

    assert result.summary["backend"] == "unsloth" and result.summary["device"] == "cuda"
    losses = result.summary["train_loss"]
    assert len(losses) == 24
    assert statistics.mean(losses[-4:]) < 0.8 * statistics.mean(losses[:4]), losses
    adapter = load_file(str(tmp_path / "ft" / "adapter" / "adapter_model.safetensors"))
    lora_b = [t for k, t in adapter.items() if "lora_B" in k]
    assert lora_b, "adapter has no LoRA B matrices"
    # LoRA B starts at zero: after training every targeted projection must have moved.
    assert all(float(t.float().abs().max()) > 0 for t in lora_b)
    assert (tmp_path / "ft" / "merged" / "config.json").is_file()


def test_llama_3b_shape_qlora_runs_inside_16_gib(tmp_path: Path) -> None:
    tokenizer = os.environ.get("PRODTUNE_GPU_TOKENIZER", "")
    if not (Path(tokenizer) / "tokenizer.json").is_file():
        pytest.skip("set PRODTUNE_GPU_TOKENIZER to SmolLM2's tokenizer dir")
    work = Path(os.environ.get("PRODTUNE_GPU_WORK", tmp_path))
    build = [
        sys.executable,
        "-m",
        "benchmarks.finetune_gpu.run",
        "build",
        "--shape",
        "llama-3.2-3b",
        "--work",
        str(work),
        "--tokenizer",
        tokenizer,
    ]
    subprocess.run(build, check=True, cwd=ROOT)
    result = tmp_path / "r.json"
    # Own process: clean peak counters. The allocator is capped at 16 GiB, so going over fails the run.
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.finetune_gpu.run",
        "one",
        "--case",
        "unsloth-llama-3.2-3b",
        "--work",
        str(work),
        "--result",
        str(result),
        "--steps",
        "3",
        "--warmup",
        "1",
        "--cap-gib",
        "16",
    ]
    subprocess.run(cmd, cwd=ROOT, timeout=600)
    r = json.loads(result.read_text())
    assert r["ok"], r.get("error")
    assert r["resolved_backend"] == "unsloth"
    assert r["config"]["max_seq_length"] == 1536 and r["rows_full_length"]
    assert r["peak_reserved_gib"] < 16.0
