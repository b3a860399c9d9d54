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

from components.common import chat_families
from components.common.atomic import atomic_dir, atomic_open, write_json
from components.common.base_weights import BaseWeights, localize
from components.common.errors import InputError
from components.common.tracking import NullTracker, Tracker, step_run
from components.finetune import evaluate
from components.finetune.schema import (  # noqa: F401  (re-exported: the step's public types)
    ALL_PROJECTIONS,
    EvalSettings,
    Example,
    FinetuneConfig,
    FinetuneResult,
    LoraSettings,
    QuantizationSettings,
    Task,
    Tokenized,
    TrainContext,
)

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
    """Torch threads for CPU training: the recipe's `cpu_threads`, else the cores nobody else is using.

    With more runnable processes than cores, OpenMP threads spin-wait for each other: measured on the
    shared 2-core dev machine (load ~9), one LoRA step took 20 s on 1 thread and 70 s on 2.
    """
    import torch

    n = config.cpu_threads
    if n is None:
        cores = os.cpu_count() or 1
        busy = runnable_others()
        if busy is None:  # no /proc: the 1-minute load average, our own process not yet in it
            busy = int(os.getloadavg()[0])
        n = max(1, cores - busy)
    torch.set_num_threads(n)
    return n


def runnable_others(stat: Path = Path("/proc/stat"), reads: int = 5, every_s: float = 0.05) -> int | None:
    """Runnable tasks besides this one now: the median of a few reads of `procs_running`.

    Not the load average: that is a 1-minute mean, so right after synthesis (the teacher busy on
    every core) it still says "busy" while the machine is idle, and training would run on 1 thread.
    """
    import statistics
    import time

    counts = []
    for i in range(reads):
        try:
            line = next(x for x in stat.read_text().splitlines() if x.startswith("procs_running "))
        except (OSError, StopIteration):
            return None
        counts.append(int(line.split()[1]) - 1)  # the reader itself is running
        if i < reads - 1:
            time.sleep(every_s)
    return max(0, int(statistics.median(counts)))


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


@dataclass(frozen=True)
class ChatSetup:
    """The chat facts training uses, all from components.common.chat_families (one owner)."""

    template: str  # the exact Jinja rendered in training, date pinned; merged/ and the GGUF carry it
    family: str
    date_string: str | None  # the date the prompt shows (Llama 3.x), recorded in the summary
    eos_tokens: list[str]  # every end token of the model: stops for evaluation, export and serving
    turn_end: str  # closes the assistant turn: in the loss, kept when a row is truncated


def end_tokens(
    tokenizer: Any, generation_eos: int | list[int] | None = None, family: str | None = None
) -> list[str]:
    """Every end token of the model: its eos, its generation config's eos ids and its family's end tokens.

    Qwen fine-tunes may emit <|endoftext|> instead of <|im_end|>: serving must stop on all of them.
    """
    ids = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    known = chat_families.by_name(family).end_tokens if family else chat_families.known_end_tokens()
    declared = [tokenizer.eos_token, *tokenizer.convert_ids_to_tokens(ids)]
    return chat_families.ordered_stops(tokenizer.get_vocab(), declared, known)


def chat_setup(config: FinetuneConfig, tokenizer: Any, generation_eos: Any = None) -> ChatSetup:
    """Resolve the template, detect its family (unknown: an error naming it), pin its date."""
    raw = resolve_chat_template(config.chat_template, tokenizer)
    family = chat_families.detect(raw)
    template = family.pin(raw, config.date_string)
    eos = end_tokens(tokenizer, generation_eos, family.name)
    if family.turn_end not in eos:
        raise InputError(
            f"the tokenizer has no {family.turn_end} token although the template is {family.label}",
            field="chat_template",
        )
    return ChatSetup(template, family.name, family.date_of(template), eos, family.turn_end)


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], template: str) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )


def fit_completion(ids: list[int], budget: int, turn_end_id: int | None) -> list[int]:
    """`ids` cut to `budget` inside the answer, keeping the end-of-turn token and what follows it,
    so a long catalogue description still teaches the model to stop."""
    if len(ids) <= budget:
        return ids
    end = max((i for i, t in enumerate(ids) if t == turn_end_id), default=None)
    tail = ids[end:] if end is not None else []
    if len(tail) >= budget:  # no room for any answer token: keep the stop at least
        return tail[:budget]
    return ids[: budget - len(tail)] + tail


def tokenize_example(
    tokenizer: Any, messages: list[dict[str, str]], template: str, max_len: int, eos_token: str
) -> Tokenized | str:
    """Prompt + completion ids with prompt labels -100 (train on completions only), or a drop reason.

    The prompt is tokenized alone, exactly as at inference (generation starts after these ids), and
    the completion is the rest of the rendered conversation (answer + end-of-turn token, which is in
    the loss). Rows over `max_len` are cut inside the answer; the end-of-turn token stays.
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
    turn_end_id = tokenizer.convert_tokens_to_ids(eos_token)
    completion_ids = fit_completion(completion_ids, max_len - len(prompt_ids), turn_end_id)
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


@dataclass
class Prepared:
    """Validated, split and tokenized data: what training and evaluation read."""

    train: list[tuple[Example, Tokenized]]
    eval: list[tuple[Example, Tokenized]]
    report: DataReport
    quarantine: list[dict[str, Any]]


@dataclass
class Trained:
    model: Any
    steps: int
    steps_this_run: int
    losses: list[tuple[int, float]]
    resumed_from: Path | None
    seconds: float


def read_and_split(
    config: FinetuneConfig, train_path: str | Path, eval_path: str | Path | None
) -> tuple[list[Example], list[Example], DataReport, list[dict[str, Any]]]:
    quarantine: list[dict[str, Any]] = []
    report = DataReport()
    train_ex = read_examples(train_path, quarantine)
    eval_ex = read_examples(eval_path, quarantine) if eval_path else None
    for q in quarantine:
        report.quarantined[q["reason"]] += 1
    train_ex, eval_ex = split_examples(train_ex, eval_ex, config)
    report.uid_overlap = len({e.uid for e in train_ex} & {e.uid for e in eval_ex})
    return train_ex, eval_ex, report, quarantine


def prepare_data(
    config: FinetuneConfig,
    tokenizer: Any,
    chat: ChatSetup,
    train_path: str | Path,
    eval_path: str | Path | None,
) -> Prepared:
    """Read, validate, split and tokenize (completion-only labels, stop kept on truncation)."""
    train_ex, eval_ex, report, quarantine = read_and_split(config, train_path, eval_path)
    common = {"template": chat.template, "max_len": config.max_seq_length, "eos_token": chat.turn_end}
    train_tok = tokenize_examples(
        tokenizer, train_ex, **common, report=report, quarantine=quarantine, source="train"
    )
    eval_tok = tokenize_examples(
        tokenizer, eval_ex, **common, report=report, quarantine=quarantine, source="eval"
    )
    report.train, report.eval = len(train_tok), len(eval_tok)
    if not train_tok:
        raise InputError("no usable training rows after validation", path=train_path)
    return Prepared(train_tok, eval_tok, report, quarantine)


def write_data_files(output_dir: Path, data: Prepared) -> None:
    """The held-out rows (the export's eval gate reads them) and the quarantine, if any."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(output_dir / EVAL_EXAMPLES_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(
            json.dumps({"uid": e.uid, "messages": e.messages}, ensure_ascii=False) + "\n"
            for e, _ in data.eval
        )
    if data.quarantine:
        with atomic_open(output_dir / QUARANTINE_FILE, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in data.quarantine)


def train_adapter(
    backend: Any,
    model: Any,
    tokenizer: Any,
    ctx: TrainContext,
    tracker: Tracker,
    resume: bool,
) -> Trained:
    """Train (resuming from the last complete checkpoint); the loss curve covers the whole run."""
    losses: list[tuple[int, float]] = []

    def on_log(step: int, logs: dict[str, float]) -> None:
        if "loss" in logs:  # live, so MLflow shows progress during a long run
            losses.append((step, float(logs["loss"])))
            tracker.log_metrics({"train_loss": float(logs["loss"])}, step=step)

    ctx.on_log = on_log
    resume_from = last_checkpoint(ctx.output_dir / "checkpoints") if resume else None
    started = time.monotonic()
    model, trainer = backend.train(model, tokenizer, ctx, resume_from)
    seconds = time.monotonic() - started
    steps = int(trainer.state.global_step)
    # log_history survives resume (it is in trainer_state.json), so the curve covers the whole run.
    history = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    live = {step for step, _ in losses}
    for step, loss in history:  # steps trained before a resume belong to this model's curve too
        if step not in live:
            tracker.log_metrics({"train_loss": loss}, step=step)
    new_steps = steps - (int(resume_from.name.split("-")[-1]) if resume_from else 0)
    return Trained(model, steps, new_steps, history or losses, resume_from, seconds)


def base_eval_identity(
    base_weights: BaseWeights,
    config: FinetuneConfig,
    chat: ChatSetup,
    device: str,
    model: Any,
    backend_name: str,
) -> dict[str, Any] | None:
    """What the base column of the eval depends on besides the rows (evaluate.base_side_key); None
    (always evaluate) when the base's files were not hashed."""
    if not base_weights.files:
        return None
    import peft
    import torch
    import transformers

    from components.common.cache import cpu_name

    return {
        "base_files": base_weights.files,
        "backend": backend_name,
        "device": device,
        "hardware": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "threads": torch.get_num_threads(),
        "dtype": str(next(model.parameters()).dtype),
        "quantization": config.quantization.model_dump(mode="json"),
        "chat_template": chat.template,
        "versions": [torch.__version__, transformers.__version__, peft.__version__],
    }


def evaluate_and_report(
    backend: Any,
    trained: Trained,
    tokenizer: Any,
    config: FinetuneConfig,
    data: Prepared,
    chat: ChatSetup,
    device: str,
    output_dir: Path,
    base_weights: BaseWeights,
    backend_name: str,
) -> dict[str, Any]:
    """Base vs fine-tuned on the held-out rows: eval.json, eval-table.md, loss.png. On CPU in float32
    whatever the training's precision: under bf16 autocast every decoding step recast the frozen
    weights and generation ran 0.91x (benchmarks/finetune_cpu/bench_precision.py)."""
    result = evaluate.evaluate_base_and_finetuned(
        trained.model, tokenizer, config, data.eval, chat.eos_tokens, device, backend=backend,
        base_identity=base_eval_identity(base_weights, config, chat, device, trained.model, backend_name),
    )  # fmt: skip
    write_json(output_dir / "eval.json", result)
    (output_dir / "eval-table.md").write_text(evaluate.eval_table(result, config.task), encoding="utf-8")
    evaluate.plot_loss(trained.losses, result, output_dir / "loss.png")
    return result


def summarize(
    config: FinetuneConfig,
    base_weights: BaseWeights,
    chat: ChatSetup,
    trained: Trained,
    data: Prepared,
    backend_name: str,
    device: str,
    threads: int | None,
) -> dict[str, Any]:
    """finetune-summary.json: what export reads (task, base, template, family, date, end tokens)."""
    return {
        "task": config.task,
        "base_model": base_weights.spec,  # as configured: export resolves it again in its own pod
        "base_weights": base_weights.as_dict(),
        "chat_template": chat.template,
        "chat_family": chat.family,
        "date_string": chat.date_string,
        "eos_tokens": chat.eos_tokens,
        "turn_end": chat.turn_end,
        "steps": trained.steps,
        "train_loss": [loss for _, loss in trained.losses],
        "train_loss_steps": [s for s, _ in trained.losses],
        "config": config.model_dump(mode="json"),
        "backend": backend_name,
        "device": device,
        "cpu_threads": threads,
        "resumed_from": trained.resumed_from.name if trained.resumed_from else None,
        "steps_this_run": trained.steps_this_run,
        "data": data.report.as_dict(),
        "train_seconds": round(trained.seconds, 1),
        "seconds_per_step": round(trained.seconds / trained.steps_this_run, 2)
        if trained.steps_this_run > 0
        else None,
        "peak_rss_mb": round(peak_rss_mb(), 0),
    }


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
    tracker = tracker or NullTracker()
    output_dir = Path(output_dir)
    # Local dir, HF repo id[@rev] or s3:// prefix -> a local dir; source, revision, hashes to MLflow.
    config, base_weights = localize(config, tracker)
    device = resolve_device(config)
    threads = set_cpu_threads(config) if device == "cpu" else None
    backend_name = resolve_backend(config, device)
    backend = _load_backend(backend_name)
    model, tokenizer = backend.load(config, device)
    chat = chat_setup(
        config, tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    )
    tokenizer.chat_template = chat.template  # merged/ (and so the GGUF) carries exactly this template

    data = prepare_data(config, tokenizer, chat, train_path, eval_path)
    write_data_files(output_dir, data)
    ctx = TrainContext(config, device, output_dir, [t for _, t in data.train], lambda s, logs: None, on_save)
    trained = train_adapter(backend, model, tokenizer, ctx, tracker, resume)
    with atomic_dir(output_dir / "adapter") as tmp:
        trained.model.save_pretrained(str(tmp))

    eval_result = evaluate_and_report(
        backend, trained, tokenizer, config, data, chat, device, output_dir, base_weights, backend_name
    )
    with atomic_dir(output_dir / "merged") as tmp:
        backend.save_merged(trained.model, tokenizer, tmp, chat.eos_tokens)

    summary = summarize(config, base_weights, chat, trained, data, backend_name, device, threads)
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
