"""The training function on CUDA with Unsloth: packed collation keeps labels and row boundaries; fp16 trains.

Run on the GPU host (docs/gpu.md): `source scripts/gpu/bootstrap.sh && pytest -m gpu tests/gpu`.
Skipped without CUDA or Unsloth. Needs $PRODTUNE_GPU_TOKENIZER (a real family tokenizer dir, Llama 3.2's)
and $PRODTUNE_GPU_DATA (benchmarks/finetune_gpu/make_data.py output); the model is a tiny random-weight
Llama-3.2-architecture checkpoint saved pre-quantized in bnb-4bit, as production loads its base.
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
from pathlib import Path

import pytest


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


def _env_dir(name: str, must_have: str) -> Path:
    d = Path(os.environ.get(name, ""))
    if not (d / must_have).is_file():
        pytest.skip(f"set {name} (a dir with {must_have})")
    return d


@pytest.fixture(scope="module")
def data() -> Path:
    return _env_dir("PRODTUNE_GPU_DATA", "describer.jsonl")


@pytest.fixture(scope="module")
def tiny_bnb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import unsloth  # noqa: F401  (first: it patches transformers/TRL, trl.SFTTrainer included)

    from benchmarks.finetune_gpu.family_bnb import build_tiny
    from benchmarks.finetune_gpu.shapes import quantize_bnb4

    tok = _env_dir("PRODTUNE_GPU_TOKENIZER", "tokenizer.json")
    root = tmp_path_factory.mktemp("tiny")
    bnb = quantize_bnb4(build_tiny("llama3.2", tok, root / "bf16"), root / "bnb")
    assert "quantization_config" in (bnb / "config.json").read_text()
    return bnb


def _config(base: Path, steps: int, **top):
    from benchmarks.finetune_gpu.run import production_config

    return production_config("describer.yaml", base, "unsloth", steps, 0, logging_steps=1, **top)


def _train_rows(tokenizer, data: Path, config, n: int):
    from components.finetune.core import end_tokens, read_examples, tokenize_example

    eos = end_tokens(tokenizer)
    turn_end = tokenizer.eos_token if tokenizer.eos_token in eos else eos[0]
    rows = []
    for ex in read_examples(data / "describer.jsonl", [])[:n]:
        t = tokenize_example(tokenizer, ex.messages, tokenizer.chat_template, config.max_seq_length, turn_end)
        assert not isinstance(t, str)
        rows.append(t)
    return rows


def test_unsloth_packed_batches_keep_labels_and_do_not_attend_across_rows(tiny_bnb: Path, data: Path) -> None:
    import torch
    from trl import SFTTrainer

    from components.finetune import backend_unsloth, training
    from components.finetune.core import TrainContext

    config = _config(tiny_bnb, 1, packing=True)
    model, tok = backend_unsloth.load(config, "cuda")
    model = backend_unsloth.add_lora(model, config)
    rows = _train_rows(tok, data, config, 24)
    ctx = TrainContext(config, "cuda", tiny_bnb.parent / "ft", rows, on_log=lambda s, x: None)
    trainer = SFTTrainer(
        model=model,
        args=training.sft_args(
            ctx,
            packed=True,
            optim="adamw_8bit",
            **training.precision_args("bf16"),
        ),
        train_dataset=training.tokenized_dataset(ctx, packed=True),
        processing_class=tok,
    )
    ds = trainer.train_dataset
    assert len(ds) < len(rows) and "seq_lengths" in ds.column_names
    batch = trainer.data_collator([ds[0], ds[1]])
    lengths = batch["packed_seq_lengths"].tolist()  # Unsloth's varlen metadata, from TRL's seq_lengths
    assert lengths == [*ds[0]["seq_lengths"], *ds[1]["seq_lengths"]]
    assert "attention_mask" not in batch
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    by_ids = {tuple(r.input_ids): r.labels for r in rows}
    a = 0
    for n in lengths:  # every packed segment is one original row with its completion-only labels
        assert batch["position_ids"][0, a : a + n].tolist() == list(range(n))
        assert by_ids[tuple(ids[a : a + n])] == labels[a : a + n]
        a += n
    # Same loss packed as row by row: no row attends to another under Unsloth's packed attention.
    model.eval()
    dev = {k: v.cuda() for k, v in batch.items()}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        packed = float(model(**dev, use_cache=False).loss)
        total = weight = 0.0
        a = 0
        for n in lengths:
            seg_labels = dev["labels"][:, a : a + n]
            k = int((seg_labels[:, 1:] != -100).sum())
            out = model(input_ids=dev["input_ids"][:, a : a + n], labels=seg_labels, use_cache=False)
            total, weight, a = total + float(out.loss) * k, weight + k, a + n
    assert math.isclose(packed, total / weight, rel_tol=2e-2), (packed, total / weight)


def test_fp16_trains_finite_and_close_to_bf16(
    tiny_bnb: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.finetune_gpu.run import _data
    from components.finetune import backend_unsloth, training
    from components.finetune.core import run_finetune

    # Unsloth refuses a 16-bit merge onto a local nf4 base (seen on the GPU host; the merge belongs on
    # a 16-bit base: benchmarks/finetune_gpu/family_bnb.py); this test is about training precision.
    monkeypatch.setattr(backend_unsloth, "save_merged", lambda *a, **k: None)

    assert training.choose_precision(_config(tiny_bnb, 1), "cuda", (7, 5)) == "fp16"  # what a T4 gets
    train, ev = _data("describer", data, tmp_path, "fp16")
    losses = {}
    for precision in ("bf16", "fp16"):
        config = _config(tiny_bnb, 30, precision=precision, packing=True, learning_rate=1e-3)
        result = run_finetune(config, train, ev, tmp_path / precision, resume=False)
        assert result.summary["backend"] == "unsloth"
        losses[precision] = result.summary["train_loss"]
    bf, fp = losses["bf16"], losses["fp16"]
    assert len(fp) == 30 and all(math.isfinite(x) for x in fp), fp
    # Random frozen embeddings bound how far a LoRA can lower the loss (~ln(vocab)); it must still fall.
    assert statistics.mean(fp[-5:]) < statistics.mean(fp[:5]), fp
    assert statistics.mean(bf[-5:]) < statistics.mean(bf[:5]), bf
    rel = [abs(a - b) / a for a, b in zip(bf, fp, strict=True)]
    assert max(rel) < 0.02, (bf, fp)
