"""transformers + PEFT + TRL backend: LoRA on CPU (the demo, CI), or on CUDA without Unsloth.

On CUDA with `quantization.load_in_4bit` and bitsandbytes installed, the base loads in 4-bit (QLoRA);
on CPU the base is float32 (TRL needs `use_cpu=True` there, else it asks for bf16), trained under bf16
autocast where the CPU computes bf16 natively (training.choose_precision).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.finetune import merge, training
from components.finetune.schema import FinetuneConfig, TrainContext


def load(config: FinetuneConfig, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(Path(config.base_model).expanduser())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"local_files_only": True}
    if device == "cuda":
        # bf16 or fp16 from the compute capability (a T4 is fp16), never from is_bf16_supported()
        kwargs["dtype"] = training.torch_dtype(training.choose_precision(config, device))
        kwargs["device_map"] = {"": 0}
        if config.quantization.load_in_4bit and _has_bitsandbytes():
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"]
            )
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    merge.remember_sources(model, path, config.merge_base_model)
    return model, tokenizer


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def add_lora(model: Any, config: FinetuneConfig) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    set_seed(config.seed)  # LoRA A init is random: same seed, same start
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, config.gradient_checkpointing)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def train(model: Any, tokenizer: Any, ctx: TrainContext, resume_from: Path | None) -> tuple[Any, Any]:
    """LoRA-wrap `model`, train it (resuming if a checkpoint is given); return (peft model, trainer)."""
    model = add_lora(model, ctx.config)
    extra: dict[str, Any] = {"optim": ctx.config.optim or "adamw_torch"}
    if ctx.device == "cpu":
        extra["use_cpu"] = True  # else TRL asks for a GPU's bf16
    # bf16/fp16 (CPU: bf16 autocast only where the CPU has it natively) from training.choose_precision
    return training.train_sft(model, tokenizer, ctx, resume_from, **extra)


def for_inference(model: Any) -> Any:
    model.eval()  # no LoRA dropout
    model.config.use_cache = True  # Trainer sets it False; generation without a KV cache is quadratic
    return model


def save_merged(model: Any, tokenizer: Any, out: Path, eos_tokens: list[str]) -> None:
    """Adapter folded into 16-bit base weights (components/finetune/merge.py: never into a 4-bit
    model); saved with tokenizer + chat template and `merge-info.json` saying which weights."""

    def in_memory(plan: merge.MergePlan, eos_ids: list[int]) -> None:
        import torch

        merged = model.merge_and_unload()
        if merged.dtype != getattr(torch, plan.dtype):  # CPU trains in float32; keep the stored dtype
            merged = merged.to(getattr(torch, plan.dtype))
        merge.set_stops(merged, eos_ids)
        merged.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))

    merge.save_merged_16bit(model, tokenizer, out, eos_tokens, in_memory)
