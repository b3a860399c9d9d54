"""Trainer pieces shared by both backends: the tokenized dataset, SFTConfig, callbacks.

Imports stay inside functions: with Unsloth, `unsloth` must be imported before transformers/TRL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.finetune.schema import TrainContext


def tokenized_dataset(ctx: TrainContext) -> Any:
    """Pre-tokenized rows with labels: TRL neither re-templates nor re-masks them (same on every backend)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"input_ids": t.input_ids, "attention_mask": [1] * len(t.input_ids), "labels": t.labels}
            for t in ctx.train
        ]
    )


def collator(tokenizer: Any) -> Any:
    # Pads input_ids with the pad token and labels with -100, keeping our completion-only mask.
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True, label_pad_token_id=-100)


def sft_args(ctx: TrainContext, *, trainer_checkpointing: bool = True, **extra: Any) -> Any:
    """SFTConfig from our config. `trainer_checkpointing=False` when the backend does it (Unsloth)."""
    from trl import SFTConfig

    c = ctx.config
    fields = SFTConfig.__dataclass_fields__
    if c.gradient_checkpointing and trainer_checkpointing:
        # transformers 5 renamed it; Unsloth images may still run 4.x
        extra[
            "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
        ] = True
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


def train_sft(
    model: Any, tokenizer: Any, ctx: TrainContext, resume_from: Path | None, **args: Any
) -> tuple[Any, Any]:
    """The one SFTTrainer both backends use (pre-tokenized, completion-only rows); `args` are the
    backend's precision/optimizer choices for `sft_args`. Returns (trained model, trainer)."""
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=sft_args(ctx, **args),
        train_dataset=tokenized_dataset(ctx),
        processing_class=tokenizer,
        data_collator=collator(tokenizer),
        callbacks=callbacks(ctx),
    )
    fit(trainer, resume_from)
    return trainer.model, trainer
