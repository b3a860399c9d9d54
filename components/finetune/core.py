"""Fine-tune: one training function for both models (describer, QA), configured by YAML.

`run_finetune(config, train, eval, output_dir)` reads the synthesis step's chat JSONL, tokenizes it
for completion-only loss (prompt tokens labelled -100, shared by every backend), trains a LoRA
adapter with TRL's SFTTrainer (Unsloth QLoRA on CUDA, transformers + PEFT on CPU), resumes from the
last checkpoint in `<output_dir>/checkpoints`, evaluates base vs fine-tuned on the held-out rows and
writes the directory the export step reads:

    adapter/  merged/  checkpoints/  finetune-summary.json  eval.json  eval-table.md  loss.png
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.common.atomic import atomic_dir, atomic_open, write_json
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.tracking import NullTracker, Tracker, step_run

Task = Literal["describer", "qa"]

# Common causal-LM projection names (Llama, Qwen2, SmolLM2, Mistral): attention and MLP.
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# End-of-turn / end-of-text tokens of the model families we serve; those in the vocabulary are stops.
KNOWN_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "</s>")
# A prompt must leave at least this many tokens for the answer, or the example teaches nothing.
MIN_COMPLETION_TOKENS = 8

SUMMARY_FILE = "finetune-summary.json"
QUARANTINE_FILE = "finetune-quarantine.jsonl"
# The held-out rows, as chat messages: the export step's eval gate scores the served quant on them.
EVAL_EXAMPLES_FILE = "eval-examples.jsonl"

# Named chat templates usable as `chat_template:` instead of the tokenizer's own ("auto").
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NAMED_TEMPLATES = {"chatml": CHATML_TEMPLATE}


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


class FinetuneConfig(StepConfig):
    task: Task
    base_model: str = Field(description="local directory of the base model (HF safetensors)")
    chat_template: str = Field(
        default="auto", description="'auto' (tokenizer's own), 'chatml', a .jinja path or inline"
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
    precision: Literal["auto", "bf16", "fp16"] = Field(
        default="auto",
        description="CUDA compute dtype; auto: from compute capability (training.choose_precision)",
    )
    cpu_threads: int | None = Field(
        default=None,
        gt=0,
        description="CPU only: torch threads (None: all cores, 1 when the CPU is oversubscribed)",
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


def flat_params(config: FinetuneConfig) -> dict[str, Any]:
    """Config as flat `a.b` keys, for MLflow params."""
    out: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = ",".join(obj) if isinstance(obj, list) else obj

    walk("", config.model_dump())
    return out


# ------------------------------------------------------------------------------------------- devices
def resolve_device(config: FinetuneConfig) -> str:
    import torch

    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise InputError("device is 'cuda' but no CUDA device is available", field="device")
    if config.device == "auto":
        return "cuda" if cuda else "cpu"
    return config.device


def set_cpu_threads(config: FinetuneConfig) -> int:
    """Torch threads for CPU training.

    With more runnable processes than cores, OpenMP threads spin-wait for each other: measured on the
    shared 2-core dev machine (load ~9), one LoRA step took 20 s on 1 thread and 70 s on 2.
    """
    import torch

    n = config.cpu_threads
    if n is None:
        cores = os.cpu_count() or 1
        n = 1 if os.getloadavg()[0] > cores else cores
    torch.set_num_threads(n)
    return n


def unsloth_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("unsloth") is not None


def resolve_backend(config: FinetuneConfig, device: str) -> Literal["hf", "unsloth"]:
    """Unsloth on CUDA when installed (or asked for); transformers + PEFT everywhere else."""
    if config.backend == "unsloth":
        if device != "cuda":
            raise InputError(
                "the unsloth backend needs a CUDA device; use backend: hf on CPU", field="backend"
            )
        if not unsloth_importable():
            raise InputError("backend is 'unsloth' but unsloth is not installed", field="backend")
        return "unsloth"
    if config.backend == "hf":
        return "hf"
    return "unsloth" if device == "cuda" and unsloth_importable() else "hf"


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Example:
    uid: str
    messages: list[dict[str, str]]
    split: str | None = None


@dataclass
class DataReport:
    train: int = 0
    eval: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    uid_overlap: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_rows": self.train,
            "eval_rows": self.eval,
            "quarantined": dict(self.quarantined),
            "truncated": self.truncated,
            "uid_overlap": self.uid_overlap,
        }


def _check_messages(obj: Any) -> str | None:
    """None if `obj` is a valid chat example (..., user, assistant), else the reason it is not."""
    if not isinstance(obj, dict):
        return "not_an_object"
    messages = obj.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return "no_messages"
    for m in messages:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            return "bad_message"
    if messages[-1]["role"] != "assistant":
        return "last_not_assistant"
    if messages[-2]["role"] != "user":
        return "no_user_turn"
    if not messages[-1]["content"].strip():
        return "empty_completion"
    return None


def read_examples(path: str | Path, quarantine: list[dict[str, Any]]) -> list[Example]:
    """Read chat JSONL; bad lines go to `quarantine` with their reason, never silently away."""
    path = Path(path)
    if not path.is_file():
        raise InputError("dataset file not found", path=path)
    examples: list[Example] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                reason: str | None = "bad_json"
            else:
                reason = _check_messages(obj)
            if reason:
                quarantine.append({"file": path.name, "line": lineno, "reason": reason, "raw": line[:2000]})
                continue
            uid = str(obj.get("uid", f"{path.name}:{lineno}"))
            examples.append(Example(uid=uid, messages=obj["messages"], split=obj.get("split")))
    return examples


def _holdout(uid: str, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_examples(
    train: list[Example], eval_rows: list[Example] | None, config: FinetuneConfig
) -> tuple[list[Example], list[Example]]:
    """Use the eval file when it has rows; else rows marked split=eval; else a seeded hash holdout by uid.

    An empty eval file happens for real (the teacher kept no pair for any eval product): evaluating on
    nothing would leave the before/after table and the export's eval gate empty, so hold out instead.
    """
    if eval_rows:
        return train, eval_rows
    if any(e.split == "eval" for e in train):
        return [e for e in train if e.split != "eval"], [e for e in train if e.split == "eval"]
    frac, seed = config.eval.holdout_fraction, config.seed
    return [e for e in train if not _holdout(e.uid, seed, frac)], [
        e for e in train if _holdout(e.uid, seed, frac)
    ]


def dataset_files(dataset_dir: str | Path, task: Task) -> tuple[Path, Path | None]:
    """`<task>-train.jsonl` and (optional) `<task>-eval.jsonl` in a synthesis output directory."""
    d = Path(dataset_dir)
    train = d / f"{task}-train.jsonl"
    if not train.is_file():
        raise InputError(f"no {train.name} in dataset directory", path=d)
    ev = d / f"{task}-eval.jsonl"
    return train, ev if ev.is_file() else None


# -------------------------------------------------------------------------------------- tokenization
def resolve_chat_template(spec: str, tokenizer: Any) -> str:
    """The exact Jinja string used for training: the tokenizer's own, a named one, a file or inline."""
    if spec == "auto":
        template = getattr(tokenizer, "chat_template", None)
        if not isinstance(template, str) or not template.strip():
            raise InputError(
                "base model's tokenizer has no chat template; set chat_template", field="chat_template"
            )
        return template
    if spec in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[spec]
    if spec.endswith(".jinja"):
        p = Path(spec).expanduser()
        if not p.is_file():
            raise InputError("chat template file not found", path=p, field="chat_template")
        return p.read_text(encoding="utf-8")
    if "{%" in spec or "{{" in spec:
        return spec
    raise InputError(
        f"unknown chat template {spec!r}: "
        f"use auto, {', '.join(NAMED_TEMPLATES)}, a .jinja path or inline Jinja",
        field="chat_template",
    )


def end_tokens(tokenizer: Any, generation_eos: int | list[int] | None = None) -> list[str]:
    """Every end token of the model: its eos, its generation config's eos ids and known end-of-turn tokens.

    Qwen fine-tunes may emit <|endoftext|> instead of <|im_end|>: serving must stop on all of them.
    """
    vocab = tokenizer.get_vocab()
    found: list[str] = []
    ids = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    candidates = [tokenizer.eos_token, *tokenizer.convert_ids_to_tokens(ids), *KNOWN_END_TOKENS]
    for tok in candidates:
        if isinstance(tok, str) and tok in vocab and tok not in found:
            found.append(tok)
    return found


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    truncated: bool


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], template: str) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )


def tokenize_example(
    tokenizer: Any, messages: list[dict[str, str]], template: str, max_len: int, eos_token: str
) -> Tokenized | str:
    """Prompt + completion ids with prompt labels -100 (train on completions only), or a drop reason.

    The prompt is tokenized alone, exactly as at inference (generation starts after these ids), and
    the completion is the rest of the rendered conversation (answer + end-of-turn token).
    """
    prompt_text = render_prompt(tokenizer, messages[:-1], template)
    full_text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise InputError(
            "chat template renders the prompt differently with and without the answer; "
            "completion-only training needs the prompt to be a prefix",
            field="chat_template",
        )
    completion_text = full_text[len(prompt_text) :]
    if eos_token not in completion_text:
        completion_text += eos_token  # templates that do not close the last turn would never teach stopping
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
    if len(prompt_ids) > max_len - MIN_COMPLETION_TOKENS:
        return "prompt_too_long"
    truncated = len(prompt_ids) + len(completion_ids) > max_len
    completion_ids = completion_ids[: max_len - len(prompt_ids)]
    return Tokenized(
        input_ids=prompt_ids + completion_ids,
        labels=[-100] * len(prompt_ids) + completion_ids,
        prompt_len=len(prompt_ids),
        truncated=truncated,
    )


def tokenize_examples(
    tokenizer: Any,
    examples: list[Example],
    template: str,
    max_len: int,
    eos_token: str,
    report: DataReport,
    quarantine: list[dict[str, Any]],
    source: str,
) -> list[tuple[Example, Tokenized]]:
    kept: list[tuple[Example, Tokenized]] = []
    for ex in examples:
        tok = tokenize_example(tokenizer, ex.messages, template, max_len, eos_token)
        if isinstance(tok, str):
            report.quarantined[tok] += 1
            quarantine.append({"file": source, "uid": ex.uid, "reason": tok})
            continue
        report.truncated += tok.truncated
        kept.append((ex, tok))
    return kept


# ------------------------------------------------------------------------------------------ training
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


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N` (one with trainer_state.json), or None."""
    if not checkpoints_dir.is_dir():
        return None
    done = [
        p
        for p in checkpoints_dir.glob("checkpoint-*")
        if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _load_backend(name: str) -> Any:
    # Nothing is downloaded at run time: every load is from a local path; no hub calls, no telemetry.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Imported lazily: Unsloth pulls a CUDA stack and must never load on CPU machines.
    if name == "unsloth":
        from components.finetune import backend_unsloth as backend
    else:
        from components.finetune import backend_hf as backend
    return backend


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_finetune(
    config: FinetuneConfig,
    train_path: str | Path,
    eval_path: str | Path | None,
    output_dir: str | Path,
    *,
    tracker: Tracker | None = None,
    resume: bool = True,
    on_save: Callable[[Path], None] | None = None,
) -> FinetuneResult:
    """Train, evaluate and write the fine-tune directory (see module docstring)."""
    from components.finetune import evaluate

    tracker = tracker or NullTracker()
    output_dir = Path(output_dir)
    base = Path(config.base_model).expanduser()
    if not (base / "config.json").is_file():
        raise InputError(
            "base model directory not found or has no config.json", path=base, field="base_model"
        )

    quarantine: list[dict[str, Any]] = []
    report = DataReport()
    train_ex = read_examples(train_path, quarantine)
    eval_ex = read_examples(eval_path, quarantine) if eval_path else None
    for q in quarantine:
        report.quarantined[q["reason"]] += 1
    train_ex, eval_ex = split_examples(train_ex, eval_ex, config)
    report.uid_overlap = len({e.uid for e in train_ex} & {e.uid for e in eval_ex})

    device = resolve_device(config)
    threads = set_cpu_threads(config) if device == "cpu" else None
    backend_name = resolve_backend(config, device)
    backend = _load_backend(backend_name)
    model, tokenizer = backend.load(config, device)
    template = resolve_chat_template(config.chat_template, tokenizer)
    tokenizer.chat_template = template  # merged/ carries exactly the template used in training
    eos = end_tokens(tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    if not eos:
        raise InputError("base model has no end-of-sequence token in its vocabulary", path=base)
    turn_end = tokenizer.eos_token if tokenizer.eos_token in eos else eos[0]

    common = {"template": template, "max_len": config.max_seq_length, "eos_token": turn_end}
    train_tok = tokenize_examples(
        tokenizer, train_ex, **common, report=report, quarantine=quarantine, source="train"
    )
    eval_tok = tokenize_examples(
        tokenizer, eval_ex, **common, report=report, quarantine=quarantine, source="eval"
    )
    report.train, report.eval = len(train_tok), len(eval_tok)
    if not train_tok:
        raise InputError("no usable training rows after validation", path=train_path)

    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(output_dir / EVAL_EXAMPLES_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(
            json.dumps({"uid": e.uid, "messages": e.messages}, ensure_ascii=False) + "\n" for e in eval_ex
        )
    if quarantine:
        with atomic_open(output_dir / QUARANTINE_FILE, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine)

    losses: list[tuple[int, float]] = []

    def on_log(step: int, logs: dict[str, float]) -> None:
        if "loss" in logs:  # live, so MLflow shows progress during a long run
            losses.append((step, float(logs["loss"])))
            tracker.log_metrics({"train_loss": float(logs["loss"])}, step=step)

    ckpt_dir = output_dir / "checkpoints"
    resume_from = last_checkpoint(ckpt_dir) if resume else None
    ctx = TrainContext(config, device, output_dir, [t for _, t in train_tok], on_log, on_save)
    started = time.monotonic()
    model, trainer = backend.train(model, tokenizer, ctx, resume_from)
    train_seconds = time.monotonic() - started
    steps = int(trainer.state.global_step)
    # log_history survives resume (it is in trainer_state.json), so the curve covers the whole run.
    history = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    live = {step for step, _ in losses}
    for step, loss in history:  # steps trained before a resume belong to this model's curve too
        if step not in live:
            tracker.log_metrics({"train_loss": loss}, step=step)
    losses = history or losses
    new_steps = steps - (int(resume_from.name.split("-")[-1]) if resume_from else 0)

    with atomic_dir(output_dir / "adapter") as tmp:
        model.save_pretrained(str(tmp))

    eval_result = evaluate.evaluate_base_and_finetuned(
        model, tokenizer, config, eval_tok, eos, device, backend=backend
    )
    write_json(output_dir / "eval.json", eval_result)
    (output_dir / "eval-table.md").write_text(evaluate.eval_table(eval_result, config.task), encoding="utf-8")
    evaluate.plot_loss(losses, eval_result, output_dir / "loss.png")

    with atomic_dir(output_dir / "merged") as tmp:
        backend.save_merged(model, tokenizer, tmp, eos)

    summary = {
        "task": config.task,
        "base_model": str(base),
        "chat_template": template,
        "eos_tokens": eos,
        "steps": steps,
        "train_loss": [loss for _, loss in losses],
        "train_loss_steps": [s for s, _ in losses],
        "config": config.model_dump(),
        "backend": backend_name,
        "device": device,
        "cpu_threads": threads,
        "resumed_from": resume_from.name if resume_from else None,
        "steps_this_run": new_steps,
        "data": report.as_dict(),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / new_steps, 2) if new_steps > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 0),
    }
    write_json(output_dir / SUMMARY_FILE, summary)
    return FinetuneResult(output_dir=output_dir, summary=summary, eval=eval_result)


class S3Checkpoints:
    """Mirror of `<output_dir>/checkpoints` under an S3 prefix, so a rescheduled pod resumes too.

    `pull` restores complete checkpoints before training; `push` (the trainer's on_save hook) uploads a
    new checkpoint with trainer_state.json last, so a checkpoint cut off mid-upload is never "complete".
    """

    def __init__(self, uri: str, store: Any = None) -> None:
        from components.common.storage import S3Store

        self.uri = uri.rstrip("/")
        self.store = store or S3Store.from_settings()

    def pull(self, checkpoints_dir: Path) -> Path | None:
        import tempfile

        from components.common.storage import StorageError

        checkpoints_dir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=checkpoints_dir.parent) as tmp:
            try:
                root = self.store.fetch_to_local(self.uri + "/", tmp)
            except StorageError:
                return None  # nothing saved yet: a fresh run
            checkpoints_dir.mkdir(parents=True, exist_ok=True)
            for ckpt in Path(root).glob("checkpoint-*"):
                if (ckpt / "trainer_state.json").is_file() and not (checkpoints_dir / ckpt.name).exists():
                    shutil.move(str(ckpt), checkpoints_dir / ckpt.name)
        return last_checkpoint(checkpoints_dir)

    def push(self, checkpoint: Path) -> None:
        files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == "trainer_state.json")
        for f in files:
            self.store.upload_file(f, f"{self.uri}/{checkpoint.name}/{f.relative_to(checkpoint).as_posix()}")


def run_finetune_tracked(
    config: FinetuneConfig,
    train_path: str | Path,
    eval_path: str | Path | None,
    output_dir: str | Path,
    *,
    resume: bool = True,
    checkpoint_uri: str | None = None,
) -> FinetuneResult:
    """`run_finetune` inside an MLflow run `finetune-<task>`: params, loss per step, eval, table, plot.

    With `checkpoint_uri` (s3://...), checkpoints are mirrored there and restored before training.
    """
    on_save = None
    if checkpoint_uri:
        mirror = S3Checkpoints(checkpoint_uri)
        if resume:
            mirror.pull(Path(output_dir) / "checkpoints")
        on_save = mirror.push
    with step_run(f"finetune-{config.task}", flat_params(config)) as tracker:
        result = run_finetune(
            config, train_path, eval_path, output_dir, tracker=tracker, resume=resume, on_save=on_save
        )
        out = result.output_dir
        metrics = {f"{side}_{k}": v for side in ("base", "finetuned") for k, v in result.eval[side].items()}
        tracker.log_metrics(
            {k: v for k, v in metrics.items() if isinstance(v, int | float) and v == v}
        )  # no NaN
        tracker.log_metrics(
            {"steps": result.summary["steps"], "train_rows": result.summary["data"]["train_rows"]}
        )
        for name in ("eval-table.md", "loss.png", "eval.json", SUMMARY_FILE):
            if (out / name).is_file():
                tracker.log_artifact(out / name)
        return result
