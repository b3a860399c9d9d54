"""Types shared by the fine-tune modules (core, backends, training, evaluate); imports none of them.

Keeping the config, the tokenized row and the backend contract here cuts the import circles
core <-> backend_* <-> training <-> evaluate: each of those imports this module, never each other's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.common.cache import writable_cache_dir
from components.common.config import StepConfig

Task = Literal["describer", "qa"]

# Common causal-LM projection names (Llama, Qwen2, SmolLM2, Mistral): attention and MLP.
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --------------------------------------------------------------------------------------------- config
class LoraSettings(StepConfig):
    r: int = Field(default=16, gt=0, le=512, description="LoRA rank")
    alpha: int = Field(default=32, gt=0, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(default_factory=lambda: list(ALL_PROJECTIONS))

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, list) and not v:
            raise ValueError("target_modules must name at least one module (or be 'all-linear')")
        return v

    def module_list(self) -> list[str] | str:
        return self.target_modules


class QuantizationSettings(StepConfig):
    load_in_4bit: bool = Field(default=True, description="QLoRA 4-bit base; honoured on CUDA only")


class EvalSettings(StepConfig):
    max_examples: int = Field(default=50, ge=0, description="held-out rows evaluated (0 = skip generation)")
    max_new_tokens: int = Field(default=128, gt=0, le=4096)
    batch_size: int = Field(default=8, gt=0)
    holdout_fraction: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="only without an eval file: share of train rows held out"
    )
    cache_dir: Path | None = Field(
        default_factory=lambda: writable_cache_dir("finetune-eval"),
        description="the base model's eval by content key (evaluate.py); null: always evaluate it",
        json_schema_extra={"doc_default": "$PRODTUNE_CACHE/finetune-eval"},
    )


class FinetuneConfig(StepConfig):
    task: Task
    base_model: str = Field(
        description="local dir, HF repo id[@revision] or s3:// prefix (common/base_weights)"
    )
    merge_base_model: str | None = Field(
        default=None, description="16-bit original of a bnb-4bit base_model: merge and eval gate use it"
    )
    chat_template: str = Field(
        default="auto", description="'auto' (tokenizer's own), 'chatml', a .jinja path or inline"
    )
    date_string: str = Field(
        default="26 Jul 2024",
        description="date pinned into templates that show one (Llama 3.x 'Today Date'): training, the "
        "GGUF and the Modelfile all render it, never today's date",
    )
    backend: Literal["auto", "hf", "unsloth"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    quantization: QuantizationSettings = Field(default_factory=QuantizationSettings)
    max_seq_length: int = Field(default=1024, ge=32, le=32768)
    per_device_batch_size: int = Field(default=2, gt=0)
    grad_accum: int = Field(default=4, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0.0, lt=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    optim: str | None = Field(
        default=None, description="None: adamw_8bit with Unsloth, adamw_torch otherwise"
    )
    num_epochs: float | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="wins over num_epochs when both are set")
    seed: int = 42
    save_steps: int = Field(default=50, gt=0)
    save_total_limit: int = Field(default=2, gt=0)
    logging_steps: int = Field(default=1, gt=0)
    gradient_checkpointing: bool = False
    packing: bool | Literal["auto"] = Field(
        default="auto",
        description="BFD-pack rows into max_seq_length rows, padding-free (training.use_packing); auto: on CUDA",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto",
        description="compute dtype; auto: on CUDA from compute capability, on CPU bf16 autocast where the "
        "CPU has it natively (AMX, AVX512-BF16), else fp32 (training.choose_precision)",
    )
    cpu_threads: int | None = Field(
        default=None,
        gt=0,
        description="CPU only: torch threads (None: the cores other runnable tasks leave free, at least 1)",
    )
    eval: EvalSettings = Field(default_factory=EvalSettings)

    @model_validator(mode="after")
    def _length_given(self) -> FinetuneConfig:
        if self.num_epochs is None and self.max_steps is None:
            raise ValueError("set num_epochs or max_steps")
        if self.warmup_ratio and self.warmup_steps:
            raise ValueError("set warmup_ratio or warmup_steps, not both")
        return self

    def with_overrides(self, **updates: Any) -> FinetuneConfig:
        """A validated copy with top-level fields replaced (None values ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in updates.items() if v is not None})
        return FinetuneConfig.model_validate(data)


@dataclass(frozen=True)
class Example:
    uid: str
    messages: list[dict[str, str]]
    split: str | None = None


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    truncated: bool


@dataclass
class TrainContext:
    """What a backend needs; the backend returns the trained PEFT model."""

    config: FinetuneConfig
    device: str
    output_dir: Path
    train: list[Tokenized]
    on_log: Callable[[int, dict[str, float]], None]
    on_save: Callable[[Path], None] | None = None


@dataclass
class FinetuneResult:
    output_dir: Path
    summary: dict[str, Any]
    eval: dict[str, Any]
