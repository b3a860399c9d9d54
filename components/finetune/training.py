"""Trainer pieces shared by both backends: precision, packing, the tokenized dataset, SFTConfig, callbacks.

Imports stay inside functions: with Unsloth, `unsloth` must be imported before transformers/TRL.

Packing (`packing:` in the recipe): rows are pre-tokenized and masked by `core.tokenize_example`; with
packing on they are bin-packed (TRL's `pack_dataset`, best-fit decreasing, no row split) into rows of at
most `max_seq_length` tokens, each carrying `seq_lengths`. TRL's padding-free collator then flattens a
micro-batch into one row whose `position_ids` restart at 0 for every original row; Unsloth reads
`packed_seq_lengths` from it and transformers' SDPA/eager masks read the position resets, so attention
stays inside each original row (tests/unit/test_packing.py checks logits and labels row by row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from components.finetune.schema import FinetuneConfig, TrainContext

Precision = Literal["bf16", "fp16", "fp32"]
# bf16 tensor cores arrived with Ampere (compute capability 8.0). A T4 is 7.5, a V100 7.0: there
# `torch.cuda.is_bf16_supported()` may still say True (emulated, several times slower), so never ask it.
BF16_MIN_CAPABILITY = (8, 0)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX, or AVX512-BF16 as on AMD Zen 4). There a bf16
    matmul at the training shapes ran 2-3x the float32 one (docs/benchmarks.md); elsewhere oneDNN
    emulates it, slower than float32."""
    import torch

    cpu = torch.cpu
    return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())


def choose_precision(
    config: FinetuneConfig,
    device: str,
    capability: tuple[int, int] | None = None,
    native_bf16: bool | None = None,
) -> Precision:
    """The compute dtype. CUDA: the recipe's `precision`, or (auto) bf16 from capability 8.0 up, else
    fp16. CPU: bf16 autocast over float32 weights where the CPU has it natively (auto) or the recipe
    asks for it, else fp32 (no fp16 autocast on CPU)."""
    if device != "cuda":
        if config.precision == "auto":
            native_bf16 = cpu_native_bf16() if native_bf16 is None else native_bf16
            return "bf16" if native_bf16 else "fp32"
        return "bf16" if config.precision == "bf16" else "fp32"
    if config.precision != "auto":
        return config.precision
    if capability is None:
        import torch

        capability = torch.cuda.get_device_capability()
    return "bf16" if tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"


def torch_dtype(precision: Precision) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def precision_args(precision: Precision) -> dict[str, bool]:
    """SFTConfig's mixed-precision flags (fp32: neither)."""
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def use_packing(config: FinetuneConfig, device: str) -> bool:
    """auto: on CUDA (measured there: docs/gpu.md), off on CPU (the demo's rows are few and short)."""
    return device == "cuda" if config.packing == "auto" else bool(config.packing)


def tokenized_dataset(ctx: TrainContext, packed: bool = False) -> Any:
    """Pre-tokenized rows with labels: TRL neither re-templates nor re-masks them (same on every backend).

    `packed`: rows bin-packed into rows of <= max_seq_length tokens with `seq_lengths` (see module doc).
    """
    from datasets import Dataset

    columns = {"input_ids": [t.input_ids for t in ctx.train], "labels": [t.labels for t in ctx.train]}
    if not packed:
        columns["attention_mask"] = [[1] * len(t.input_ids) for t in ctx.train]
        return Dataset.from_dict(columns)
    from trl import pack_dataset

    # Every row is already <= max_seq_length (core.tokenize_example), so "bfd" never truncates here.
    return pack_dataset(Dataset.from_dict(columns), ctx.config.max_seq_length, strategy="bfd")


def collator(tokenizer: Any) -> Any:
    # Pads input_ids with the pad token and labels with -100, keeping our completion-only mask.
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True, label_pad_token_id=-100)


def sft_args(ctx: TrainContext, *, packed: bool = False, **extra: Any) -> Any:
    """SFTConfig from our config.

    `packed`: TRL's padding-free collation of packed rows (Unsloth turns its packed attention on from
    `packing`); off, padding_free is set False explicitly so Unsloth does not switch it on by itself.
    """
    from trl import SFTConfig

    c = ctx.config
    fields = SFTConfig.__dataclass_fields__
    # Set both ways: TRL's SFTConfig defaults it to True, so a recipe's `false` meant nothing (the CPU
    # demo recomputed every activation in backward: docs/benchmarks.md). Unsloth reads the same flag when
    # it restores its own checkpointing mode for training. transformers 5 renamed it; 4.x still has
    # the old name (Unsloth images).
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    )
    extra.setdefault(checkpointing, c.gradient_checkpointing)
    length = {"max_steps": c.max_steps} if c.max_steps else {"num_train_epochs": c.num_epochs}
    # transformers 5 reads a float warmup_steps < 1 as a ratio; 4.x (Unsloth images) still has warmup_ratio.
    if c.warmup_ratio and "warmup_ratio" in fields:
        warmup: dict[str, Any] = {"warmup_ratio": c.warmup_ratio}
    else:
        warmup = {"warmup_steps": c.warmup_steps or c.warmup_ratio}
    return SFTConfig(
        output_dir=str(ctx.output_dir / "checkpoints"),
        per_device_train_batch_size=c.per_device_batch_size,
        gradient_accumulation_steps=c.grad_accum,
        learning_rate=c.learning_rate,
        lr_scheduler_type=c.lr_scheduler,
        weight_decay=c.weight_decay,
        seed=c.seed,
        data_seed=c.seed,
        logging_steps=c.logging_steps,
        save_strategy="steps",
        save_steps=c.save_steps,
        save_total_limit=c.save_total_limit,
        max_length=c.max_seq_length,
        dataset_kwargs={"skip_prepare_dataset": True},  # already tokenized and masked (core.tokenize_example)
        remove_unused_columns=False,
        packing=packed,
        padding_free=packed,
        report_to="none",  # tracking goes through components.common.tracking
        **length,
        **warmup,
        **extra,
    )


def callbacks(ctx: TrainContext) -> list[Any]:
    from transformers import TrainerCallback

    class Relay(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ):
            if logs:
                ctx.on_log(int(state.global_step), logs)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any):
            if ctx.on_save is not None:
                ctx.on_save(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return [Relay()]


def fit(trainer: Any, resume_from: Path | None) -> None:
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


def labelled_positions(labels: Any) -> Any:
    """Positions t whose next token (t + 1) is a label in any row: the only logits the loss reads."""
    import torch

    return torch.nonzero((labels[:, 1:] != -100).any(dim=0)).flatten()


def completion_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[Any, Any]:
    """Mean NLL of the label tokens with the LM head run on `labelled_positions` only.

    TRL's fused LM head scores every position on CPU (its compact path is for Triton devices) and
    recomputes the logits in backward; a completion-only row needs only the answer's positions. Same
    normalisation as TRL: summed over the label tokens, divided by `num_items_in_batch` when the
    Trainer counts it (gradient accumulation), else by this batch's label count."""
    import torch

    labels = inputs["labels"]
    keep = labelled_positions(labels)
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**rest, use_cache=False, logits_to_keep=keep)
    logits = outputs.logits.float()
    target = labels[:, keep + 1]
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = (target != -100).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count).clamp(min=1), outputs


def trainer_class(device: str) -> Any:
    """TRL's SFTTrainer; on CPU with the loss of `completion_loss` (measured: docs/benchmarks.md)."""
    from trl import SFTTrainer

    if device == "cuda":  # TRL's Triton head scores the labelled positions only; Unsloth brings its own loss
        return SFTTrainer

    class CompletionLogitsTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = completion_loss(model, inputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return CompletionLogitsTrainer


def train_sft(
    model: Any, tokenizer: Any, ctx: TrainContext, resume_from: Path | None, **args: Any
) -> tuple[Any, Any]:
    """The one SFTTrainer both backends use (pre-tokenized, completion-only rows); `args` are the
    backend's optimizer/checkpointing choices for `sft_args`. Precision (CPU too: bf16 autocast where it
    is native) and packing are decided here, once, for both backends. Returns (trained model, trainer)."""
    packed = use_packing(ctx.config, ctx.device)
    args.update(precision_args(choose_precision(ctx.config, ctx.device)))
    trainer = trainer_class(ctx.device)(
        model=model,
        args=sft_args(ctx, packed=packed, **args),
        train_dataset=tokenized_dataset(ctx, packed),
        processing_class=tokenizer,
        # Packed: TRL's own padding-free collator (Unsloth wraps it); a custom one would disable packing.
        data_collator=None if packed else collator(tokenizer),
        callbacks=callbacks(ctx),
    )
    fit(trainer, resume_from)
    return trainer.model, trainer
