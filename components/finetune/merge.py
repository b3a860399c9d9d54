"""Merging the LoRA adapter onto 16-bit base weights, never into a 4-bit model.

Folding LoRA into a bnb-4bit model re-quantizes the sum (the adapter's small deltas are rounded
away) and leaves weights llama.cpp cannot convert. So the merged model is always built from
16-bit weights, chosen by `plan_merge` (pure, unit-tested on CPU):

- `original`: `merge_base_model` is given (e.g. Qwen/Qwen2.5-7B-Instruct for the
  unsloth/...-bnb-4bit base): the adapter goes onto the original weights;
- `dequantized`: the base is a pre-quantized bnb-4bit checkpoint and nothing else is given: it is
  dequantized on CPU (components/common/bnb.py) and the adapter goes onto that;
- `reload`: the base is a 16-bit checkpoint that training loaded in 4-bit (QLoRA on the fly):
  the base is reloaded from disk in its stored 16-bit dtype;
- `in_memory`: training ran on 16/32-bit weights (CPU path): the trained model is merged as is.

The first three run on CPU in bf16 (a 7B merge needs ~16 GB of RAM, no GPU memory), reading
the adapter that was just trained.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from components.common.bnb import is_bnb_4bit

MergeSource = Literal["original", "dequantized", "reload", "in_memory"]
_16BIT = ("bfloat16", "float16")


@dataclass(frozen=True)
class MergePlan:
    source: MergeSource
    base_dir: Path  # the weights the adapter is applied to (before dequantization for "dequantized")
    dtype: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "base_dir": str(self.base_dir),
            "dtype": self.dtype,
            "reason": self.reason,
        }


def stored_dtype(model_dir: str | Path, default: str = "bfloat16") -> str:
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    dtype = cfg.get("dtype") or cfg.get("torch_dtype")
    if cfg.get("quantization_config"):  # bnb: the compute dtype is the 16-bit one
        q = cfg["quantization_config"]
        dtype = q.get("bnb_4bit_compute_dtype") or dtype
    return dtype if dtype in (*_16BIT, "float32") else default


def plan_merge(base_dir: str | Path, merge_base: str | Path | None, *, loaded_in_4bit: bool) -> MergePlan:
    """Which 16-bit weights the adapter is merged onto (see the module docstring)."""
    base_dir = Path(base_dir)
    if merge_base is not None:
        merge_base = Path(merge_base)
        if is_bnb_4bit(merge_base):
            raise ValueError(f"merge_base_model {merge_base} is itself a bnb-4bit checkpoint")
        dtype = stored_dtype(merge_base)
        return MergePlan(
            "original", merge_base, dtype if dtype in _16BIT else "bfloat16", "original weights given"
        )
    if is_bnb_4bit(base_dir):
        dtype = stored_dtype(base_dir)
        return MergePlan(
            "dequantized",
            base_dir,
            dtype if dtype in _16BIT else "bfloat16",
            "bnb-4bit checkpoint only: dequantized on CPU, then merged",
        )
    if loaded_in_4bit:
        dtype = stored_dtype(base_dir)
        return MergePlan(
            "reload",
            base_dir,
            dtype if dtype in _16BIT else "bfloat16",
            "16-bit base trained in 4-bit: reloaded in 16-bit from disk",
        )
    return MergePlan(
        "in_memory", base_dir, stored_dtype(base_dir, "float16"), "trained on unquantized weights"
    )


def merge_onto(plan: MergePlan, adapter_dir: Path, out: Path, tokenizer: Any, eos_ids: list[int]) -> None:
    """Load `plan`'s 16-bit weights on CPU, apply the adapter, fold it in and save to `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from components.common.bnb import dequantize_checkpoint

    with tempfile.TemporaryDirectory(prefix="merge-base-", dir=out.parent) as tmp:
        base_dir = plan.base_dir
        if plan.source == "dequantized":
            base_dir = dequantize_checkpoint(base_dir, Path(tmp) / "base", dtype=plan.dtype)
        base = AutoModelForCausalLM.from_pretrained(
            str(base_dir), dtype=getattr(torch, plan.dtype), device_map={"": "cpu"}, local_files_only=True
        )
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        set_stops(merged, eos_ids)
        merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def set_stops(model: Any, eos_ids: list[int]) -> None:
    # generation_config lists every end token, so HF generate and the GGUF converter stop on all of them.
    model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]


def save_adapter_copy(peft_model: Any, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(into))
    return into


# Set by the backends' load(): the weights a merge must start from, which the in-memory (possibly
# 4-bit) model no longer tells. An attribute of the HF model object survives PEFT wrapping.
MERGE_ATTR = "prodtune_merge_sources"


def remember_sources(model: Any, base_dir: str | Path, merge_base: str | None) -> None:
    setattr(model, MERGE_ATTR, {"base_dir": str(base_dir), "merge_base": merge_base})


def save_merged_16bit(
    peft_model: Any, tokenizer: Any, out: Path, eos_tokens: list[str], in_memory: Any
) -> MergePlan:
    """Both backends' save_merged: plan, then merge on CPU from 16-bit weights, or `in_memory(...)`."""
    from components.common.base_weights import resolve_base_weights

    base = peft_model.get_base_model()
    sources = getattr(base, MERGE_ATTR, None) or {"base_dir": base.name_or_path, "merge_base": None}
    merge_base = sources.get("merge_base")
    original = resolve_base_weights(merge_base).path if merge_base else None
    plan = plan_merge(
        sources["base_dir"], original, loaded_in_4bit=bool(getattr(base, "is_loaded_in_4bit", False))
    )
    ids = tokenizer.convert_tokens_to_ids(eos_tokens)
    if plan.source == "in_memory":
        in_memory(plan, ids)
    else:
        with tempfile.TemporaryDirectory(prefix="adapter-", dir=out.parent) as tmp:
            merge_onto(plan, save_adapter_copy(peft_model, Path(tmp) / "adapter"), out, tokenizer, ids)
    (out / "merge-info.json").write_text(json.dumps(plan.as_dict(), indent=2) + "\n", encoding="utf-8")
    return plan
