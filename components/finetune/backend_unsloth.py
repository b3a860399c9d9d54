"""Unsloth backend: QLoRA with `FastLanguageModel` + TRL `SFTTrainer` on one CUDA GPU.

Imported only when the resolved device is CUDA and unsloth is installed (the GPU training image);
`import unsloth` pulls a CUDA torch and patches transformers/TRL, so it must come first and never on CPU.

Completion-only loss does not use Unsloth's `train_on_responses_only` nor TRL's prompt-completion
path (both have had open bugs with Unsloth's patched trainer, e.g. unslothai/unsloth#3399, #4486):
the rows arrive pre-tokenized with prompt labels -100 (core.tokenize_example, the same function
the CPU backend uses), TRL's preparation is skipped and `DataCollatorForSeq2Seq` pads labels with -100.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from components.finetune import merge, training
from components.finetune.schema import ALL_PROJECTIONS, FinetuneConfig, TrainContext


def load(config: FinetuneConfig, device: str) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    import unsloth  # noqa: F401  (must precede transformers/TRL so its patches apply)
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(Path(config.base_model).expanduser()),
        max_seq_length=config.max_seq_length,
        load_in_4bit=config.quantization.load_in_4bit,
        # bf16 from compute capability 8.0, fp16 below (T4): training.choose_precision, not Unsloth's guess
        dtype=training.torch_dtype(training.choose_precision(config, device)),
        local_files_only=True,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    merge.remember_sources(model, Path(config.base_model).expanduser(), config.merge_base_model)
    return model, tokenizer


def add_lora(model: Any, config: FinetuneConfig) -> Any:
    from unsloth import FastLanguageModel

    targets = config.lora.target_modules
    return FastLanguageModel.get_peft_model(
        model,
        r=config.lora.r,
        # Unsloth takes explicit module names; "all-linear" means every attention and MLP projection.
        target_modules=list(ALL_PROJECTIONS) if targets == "all-linear" else list(targets),
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        bias="none",
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed,
        max_seq_length=config.max_seq_length,
    )


def train(model: Any, tokenizer: Any, ctx: TrainContext, resume_from: Path | None) -> tuple[Any, Any]:
    model = add_lora(model, ctx.config)
    # precision (bf16/fp16) and packing are set by train_sft for both backends
    return training.train_sft(
        model,
        tokenizer,
        ctx,
        resume_from,
        optim=ctx.config.optim or "adamw_8bit",
    )


def for_inference(model: Any) -> Any:
    from unsloth import FastLanguageModel

    FastLanguageModel.for_inference(model)
    return model


def save_merged(model: Any, tokenizer: Any, out: Path, eos_tokens: list[str]) -> None:
    """16-bit merged weights for GGUF export, never folded into the 4-bit model: the adapter goes
    onto the original weights (`merge_base_model`), or the bnb checkpoint dequantized on CPU, or the
    16-bit base reloaded (components/finetune/merge.py). Unsloth's own merge only when training ran
    on unquantized weights."""

    def in_memory(plan: merge.MergePlan, eos_ids: list[int]) -> None:
        model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
        model.save_pretrained_merged(str(out), tokenizer, save_method="merged_16bit")

    merge.save_merged_16bit(model, tokenizer, out, eos_tokens, in_memory)
