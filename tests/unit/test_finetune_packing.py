"""Packing and precision in the trainer pieces (components/finetune/training.py), on CPU.

Packed rows must keep the completion-only labels of every original row, restart position ids at each
row, and (through transformers' attention masks) keep each row's attention inside itself: a packed
forward gives the same logits as the rows one by one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from components.finetune import training
from components.finetune.core import FinetuneConfig, Tokenized, TrainContext

IGNORE = -100


def _config(**kw) -> FinetuneConfig:
    return FinetuneConfig(task="describer", base_model="/nonexistent", max_steps=1, max_seq_length=32, **kw)


def _rows(seed: int = 0, n: int = 7) -> list[Tokenized]:
    """Rows of different lengths (3..20 tokens) with a prompt part labelled -100."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(3, 21, (1,), generator=g))
        prompt = max(1, length // 2 - i % 2)
        ids = torch.randint(1, 100, (length,), generator=g).tolist()
        rows.append(Tokenized(ids, [IGNORE] * prompt + ids[prompt:], prompt, False))
    return rows


def _ctx(rows: list[Tokenized], **kw) -> TrainContext:
    return TrainContext(_config(**kw), "cpu", Path("/tmp"), rows, on_log=lambda s, x: None)


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_precision_comes_from_compute_capability(capability, expected) -> None:
    assert training.choose_precision(_config(), "cuda", capability) == expected


def test_precision_forced_by_recipe_and_fp32_on_cpu() -> None:
    assert training.choose_precision(_config(precision="fp16"), "cuda", (9, 0)) == "fp16"
    assert training.choose_precision(_config(precision="bf16"), "cuda", (7, 5)) == "bf16"
    assert training.choose_precision(_config(precision="fp16"), "cpu") == "fp32"
    assert training.precision_args("fp16") == {"bf16": False, "fp16": True}
    assert training.precision_args("fp32") == {"bf16": False, "fp16": False}


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_cpu_auto_precision_is_bf16_only_where_the_cpu_has_it(native, expected) -> None:
    # Emulated bf16 (AVX2, AVX512 without BF16) is slower than fp32: auto never picks it there.
    assert training.choose_precision(_config(), "cpu", native_bf16=native) == expected
    assert training.choose_precision(_config(precision="bf16"), "cpu", native_bf16=False) == "bf16"
    assert training.choose_precision(_config(precision="fp32"), "cpu", native_bf16=True) == "fp32"
    assert training.choose_precision(_config(precision="fp32"), "cuda", (9, 0)) == "fp32"


def test_packing_auto_is_on_for_cuda_only() -> None:
    assert training.use_packing(_config(), "cuda") and not training.use_packing(_config(), "cpu")
    assert training.use_packing(_config(packing=True), "cpu")
    assert not training.use_packing(_config(packing=False), "cuda")


def test_production_recipes_name_packing_and_precision() -> None:
    from components.common.config import CONFIG_DIR, load_config

    for recipe in ("describer.yaml", "qa.yaml"):
        cfg = load_config(FinetuneConfig, CONFIG_DIR / recipe)
        assert cfg.packing == "auto" and cfg.precision == "auto"


def _packed_batches(rows: list[Tokenized], batch_rows: int = 2) -> list[dict]:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    ds = training.tokenized_dataset(_ctx(rows), packed=True)
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    items = [ds[i] for i in range(len(ds))]
    return [collate(items[i : i + batch_rows]) for i in range(0, len(items), batch_rows)], ds


def test_packed_rows_keep_every_row_and_its_labels() -> None:
    rows = _rows()
    batches, ds = _packed_batches(rows)
    assert all(sum(ds[i]["seq_lengths"]) <= 32 for i in range(len(ds)))
    assert len(ds) < len(rows)  # rows were really packed together
    seen = []
    for b in batches:
        # padding-free: no mask, no pad (TRL >= 1.16 adds varlen kwargs such as cu_seq_lens_q too)
        assert {"input_ids", "labels", "position_ids"} <= set(b) and "attention_mask" not in b
        ids, labels, pos = b["input_ids"][0].tolist(), b["labels"][0].tolist(), b["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        for a, z in itertools.pairwise(starts):
            assert pos[a:z] == list(range(z - a))  # positions restart at every original row
            seen.append((ids[a:z], labels[a:z]))
    expected = sorted((r.input_ids, r.labels) for r in rows)
    assert sorted(seen) == expected  # each row once, labels (completion-only mask) unchanged


def test_padded_dataset_is_unchanged_when_packing_is_off() -> None:
    rows = _rows(1)
    ds = training.tokenized_dataset(_ctx(rows), packed=False)
    assert len(ds) == len(rows)
    assert [ds[i]["labels"] for i in range(len(ds))] == [r.labels for r in rows]
    assert "seq_lengths" not in ds.column_names


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_does_not_attend_across_rows(attn: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation=attn,
    )
    model = LlamaForCausalLM(cfg).eval()
    rows = _rows(2)
    batches, _ = _packed_batches(rows)
    with torch.no_grad():
        for b in batches:
            # what training hands the model: the collated batch (varlen kwargs included) and, from
            # SFTTrainer.compute_loss, use_cache=False (with a cache, transformers skips packed masking)
            packed = model(**{k: v for k, v in b.items() if k != "labels"}, use_cache=False).logits[0]
            pos = b["position_ids"][0].tolist()
            starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
            for a, z in itertools.pairwise(starts):
                alone = model(input_ids=b["input_ids"][:, a:z]).logits[0]
                torch.testing.assert_close(packed[a:z], alone, atol=1e-5, rtol=1e-4)


def test_trainer_disables_the_cache_packed_masking_depends_on() -> None:
    """transformers builds per-row masks from position ids only without a KV cache; TRL's SFTTrainer
    passes use_cache=False to every training forward. Guard that, since packing's correctness rests on it."""
    import inspect

    from trl import SFTTrainer

    assert 'inputs["use_cache"] = False' in inspect.getsource(SFTTrainer.compute_loss)


@pytest.mark.parametrize("on", [False, True])
def test_the_recipe_decides_activation_checkpointing(on: bool) -> None:
    # TRL's SFTConfig defaults it to True: a recipe's `false` must reach the Trainer as False.
    args = training.sft_args(_ctx(_rows(), gradient_checkpointing=on), use_cpu=True, bf16=False)
    assert args.gradient_checkpointing is on
    assert getattr(args, "activation_checkpointing", on) is on
