"""Export step: fine-tuned model dir -> GGUF (f16 + quants), Modelfile, fidelity gate, registry.

Input (from fine-tune): `<model_dir>/merged/` (HF model + tokenizer), `adapter/`,
`finetune-summary.json` (`task`, `base_model`, `chat_template`, `eos_tokens`), `eval.json`, and
optionally `eval-examples.jsonl` (held-out `{"messages": [...]}` whose last turn is the reference).

Output dir: `prodtune-<task>-F16.gguf`, `prodtune-<task>-<LEVEL>.gguf` per quant level, `Modelfile`
(FROM the served level), `export-summary.json`. Fully offline; nothing is compiled at run time.
A fidelity failure writes the summary (with the evidence) and raises `FidelityError`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from components.common import chat_families
from components.common.atomic import atomic_open, write_json
from components.common.cache import cache_root
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.settings import Settings, get_settings
from components.export import fidelity
from components.export.gate import GateConfig
from components.export.gguf import (
    QUANT_FTYPES,
    ExportError,
    GGUFRunner,
    convert_hf_to_gguf,
    ensure_converter,
    quantize,
)
from components.export.modelfile import Modelfile, build_modelfile, parse_modelfile

log = logging.getLogger(__name__)

TASKS = ("describer", "qa")
F16 = "F16"
LLAMA_CPP_VERSION = "0.3.36"
_CACHE = cache_root()
_HELDOUT = Path(__file__).with_name("heldout.txt")


class FidelityError(ExportError):
    """The exported model would not be served like it was trained (template or greedy mismatch)."""


class FidelityConfig(StepConfig):
    n_tokens: int = Field(default=24, gt=0, description="greedy tokens compared per golden prompt")
    # Minimums per level, measured on SmolLM2-135M (docs/export.md); levels not listed use `default_*`.
    min_token_agreement: dict[str, float] = Field(
        default_factory=lambda: {F16: 0.95, "Q8_0": 0.85, "Q4_K_M": 0.6}
    )
    min_prefix_match: dict[str, float] = Field(default_factory=lambda: {F16: 0.5, "Q8_0": 0.3, "Q4_K_M": 0.0})
    default_min_token_agreement: float = 0.5
    default_min_prefix_match: float = 0.0
    golden_path: Path | None = Field(
        default=None, description='JSONL of {"messages": [...]}; default built in'
    )


class ExportConfig(StepConfig):
    quant_levels: list[str] = Field(default_factory=lambda: ["Q4_K_M", "Q8_0"])
    serve_level: str = "Q4_K_M"
    sdist_path: Path = _CACHE / "sdist" / f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"
    tools_dir: Path = _CACHE / f"llama.cpp-{LLAMA_CPP_VERSION}"
    threads: int = Field(default=0, ge=0, description="0 = all cores")
    n_ctx: int = Field(default=1024, gt=0, description="context for measurements (not serving)")
    # Modelfile parameters
    temperature: float = Field(default=0.7, ge=0)
    num_ctx: int = Field(default=2048, gt=0)
    parameters: dict[str, float | int | str] = Field(default_factory=dict)
    # measurements
    heldout_path: Path | None = None
    perplexity_max_tokens: int = Field(default=512, gt=1)
    speed_tokens: int = Field(default=48, gt=0)
    fidelity: FidelityConfig = FidelityConfig()
    gate: GateConfig = GateConfig()
    # registry
    publish: bool = Field(default=True, description="upload + register when MLflow is configured")
    s3_prefix: str = "models"

    @model_validator(mode="after")
    def _levels(self) -> ExportConfig:
        unknown = [q for q in self.quant_levels if q not in QUANT_FTYPES]
        if unknown:
            raise ValueError(f"unknown quant levels {unknown} (known: {sorted(QUANT_FTYPES)})")
        if self.serve_level not in [*self.quant_levels, F16]:
            raise ValueError(f"serve_level {self.serve_level} must be F16 or one of quant_levels")
        return self


# --- inputs ------------------------------------------------------------------------------------


def read_model_dir(model_dir: str | Path) -> tuple[Path, dict[str, Any], dict[str, Any] | None]:
    """(merged dir, finetune summary, eval.json or None), validated."""
    model_dir = Path(model_dir)
    merged = model_dir / "merged"
    if not (merged / "config.json").is_file():
        raise InputError("no merged HF model (merged/config.json) in the fine-tune output", path=model_dir)
    summary_path = model_dir / "finetune-summary.json"
    if not summary_path.is_file():
        raise InputError("finetune-summary.json missing", path=model_dir)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=summary_path, line=exc.lineno) from None
    if summary.get("task") not in TASKS:
        raise InputError(f"task must be one of {TASKS}", path=summary_path, field="task")
    eval_path = model_dir / "eval.json"
    evals = json.loads(eval_path.read_text(encoding="utf-8")) if eval_path.is_file() else None
    return merged, summary, evals


def read_conversations(path: Path) -> list[list[dict[str, str]]]:
    convs = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"expected a JSON object with 'messages': {exc}", path=path, line=i) from None
        if not messages or not all({"role", "content"} <= set(m) for m in messages):
            raise InputError("messages must be a non-empty list of {role, content}", path=path, line=i)
        convs.append([{"role": m["role"], "content": m["content"]} for m in messages])
    return convs


def heldout_texts(config: ExportConfig) -> list[str]:
    path = config.heldout_path or _HELDOUT
    if not path.is_file():
        raise InputError("held-out text not found", path=path, field="heldout_path")
    return [block.strip() for block in path.read_text(encoding="utf-8").split("\n\n") if block.strip()]


def gguf_name(task: str, level: str) -> str:
    return f"prodtune-{task}-{level}.gguf"


# --- the step ----------------------------------------------------------------------------------


def export_gguf(merged: Path, out_dir: Path, task: str, config: ExportConfig) -> dict[str, Path]:
    """f16 + every configured quant level in one pass; returns {level: path}."""
    tools = ensure_converter(config.tools_dir, config.sdist_path)
    files = {F16: convert_hf_to_gguf(merged, out_dir / gguf_name(task, F16), tools, "f16")}
    for level in config.quant_levels:
        files[level] = quantize(files[F16], out_dir / gguf_name(task, level), level, config.threads)
    return files


def run_export(
    model_dir: str | Path,
    out_dir: str | Path,
    config: ExportConfig,
    *,
    settings: Settings | None = None,
    echo: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """The whole step; returns (and writes) export-summary.json's content."""
    settings = settings or get_settings()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    merged, ft_summary, evals = read_model_dir(model_dir)
    task = ft_summary["task"]
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    with _timed(timings, "convert_quantize_s"):
        echo(f"[export] converting {merged} to GGUF F16 + {', '.join(config.quant_levels)}")
        files = export_gguf(merged, out_dir, task, config)
    chat = training_chat(merged, ft_summary)
    modelfile_path, modelfile = write_modelfile(out_dir, chat, task, files[config.serve_level], config)
    summary = base_summary(task, model_dir, config, files, modelfile_path, modelfile, evals, timings)
    summary["chat"] = {"family": chat.family, "date_string": chat.date_string}

    with _timed(timings, "fidelity_s"):
        golden = golden_conversations(config, task)
        echo(f"[export] fidelity gate on {len(golden)} golden conversations")
        gate_result = run_fidelity_gate(
            merged, chat.tokenizer, chat.template, modelfile_path, files, golden, config
        )
    summary.update(levels=gate_result["levels"], fidelity=gate_result["fidelity"])
    if not gate_result["fidelity"]["passed"]:
        write_json(out_dir / "export-summary.json", summary)
        raise FidelityError(gate_result["fidelity"]["reason"])

    with _timed(timings, "eval_gate_s"):
        echo(f"[export] eval gate on {config.serve_level} (fine-tuned vs base, margin {config.gate.margin})")
        summary["eval_gate"] = eval_gate(
            model_dir, ft_summary, files[config.serve_level], modelfile_path, out_dir, config
        )
    write_json(out_dir / "export-summary.json", summary)

    with _timed(timings, "publish_s"):
        summary["registry"] = publish_step(out_dir, summary, model_dir, settings, config, echo)
    write_json(out_dir / "export-summary.json", summary)
    return summary


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - started


@dataclass
class TrainingChat:
    """The chat the model was trained with, as the fine-tune step recorded it."""

    tokenizer: Any
    template: str  # the exact training Jinja (date pinned)
    family: str
    date_string: str | None
    eos_tokens: list[str]


def training_chat(merged: Path, ft_summary: dict[str, Any]) -> TrainingChat:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    template = ft_summary.get("chat_template") or tokenizer.chat_template
    if not template:
        raise InputError("no chat template in finetune-summary.json nor the tokenizer", field="chat_template")
    family = chat_families.detect(template)
    eos = [t for t in [*ft_summary.get("eos_tokens", []), tokenizer.eos_token] if t]
    return TrainingChat(tokenizer, template, family.name, family.date_of(template), eos)


def write_modelfile(
    out_dir: Path, chat: TrainingChat, task: str, served: Path, config: ExportConfig
) -> tuple[Path, Modelfile]:
    """The Ollama Modelfile: the family's Go TEMPLATE, the task's trained SYSTEM, every stop."""
    tok = chat.tokenizer
    modelfile = build_modelfile(
        served.name,
        chat.template,
        eos_tokens=chat.eos_tokens,
        vocab=tok.get_vocab().keys(),
        parameters={"temperature": config.temperature, "num_ctx": config.num_ctx, **config.parameters},
        task=task,
        bos_token=tok.bos_token or "",
        eos_token=tok.eos_token or "",
    )
    path = out_dir / "Modelfile"
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(modelfile.render())
    return path, modelfile


def base_summary(
    task: str,
    model_dir: Path,
    config: ExportConfig,
    files: dict[str, Path],
    modelfile_path: Path,
    modelfile: Modelfile,
    evals: dict[str, Any] | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    return {
        "task": task,
        "model_dir": str(model_dir),
        "serve_level": config.serve_level,
        "files": {level: path.name for level, path in files.items()},
        "modelfile": modelfile_path.name,
        "stops": modelfile.stops,
        "system": modelfile.system,
        "finetune_eval": evals,
        "timings": timings,
    }


def golden_conversations(config: ExportConfig, task: str) -> list[list[dict[str, str]]]:
    if config.fidelity.golden_path:
        return read_conversations(config.fidelity.golden_path)
    return fidelity.default_golden(task)


def publish_step(
    out_dir: Path,
    summary: dict[str, Any],
    model_dir: Path,
    settings: Settings,
    config: ExportConfig,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    if not (config.publish and settings.mlflow_tracking_uri):
        return {"skipped": "register disabled or MLFLOW_TRACKING_URI unset"}
    from components.export.registry import publish

    echo("[export] uploading to S3 and registering in MLflow")
    return publish(out_dir, summary, model_dir / "adapter", settings, config)


def run_fidelity_gate(
    merged: Path,
    tokenizer: Any,
    training_template: str,
    modelfile_path: Path,
    files: dict[str, Path],
    golden: list[list[dict[str, str]]],
    config: ExportConfig,
) -> dict[str, Any]:
    """Template strings + tokens, then greedy agreement, perplexity and speed per level."""
    modelfile = parse_modelfile(modelfile_path.read_text(encoding="utf-8"))
    # Prompts as served: a conversation without a system message gets the Modelfile's SYSTEM (what
    # Ollama does, and what the router always sends), so every runtime is scored on the same prompt.
    conversations = fidelity.served(golden, modelfile.system)
    check, hf_prompts, gguf_prompts = check_prompt_templates(
        tokenizer, training_template, modelfile, files, golden, conversations, config
    )
    result: dict[str, Any] = {"templates": {"passed": check.passed, "detail": check.describe()}, "levels": {}}
    if not check.passed:
        result["passed"], result["reason"] = False, check.describe()
        return {"fidelity": result, "levels": {}}
    stop_ids = {i for t in modelfile.stops if (i := tokenizer.convert_tokens_to_ids(t)) is not None}
    levels, failures = measure_levels(merged, files, hf_prompts, gguf_prompts, stop_ids, config)
    result["passed"] = not failures
    result["reason"] = "; ".join(failures) if failures else "ok"
    return {"fidelity": result, "levels": levels}


def check_prompt_templates(
    tokenizer: Any,
    training_template: str,
    modelfile: Modelfile,
    files: dict[str, Path],
    golden: list[list[dict[str, str]]],
    conversations: list[list[dict[str, str]]],
    config: ExportConfig,
) -> tuple[fidelity.TemplateCheck, list[list[int]], list[list[int]]]:
    """Every renderer against the training Jinja on `golden`; the Modelfile against it on the served
    conversations. Returns the check and the HF and GGUF token ids of the served prompts."""
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    f16 = GGUFRunner(files[F16], n_ctx=config.n_ctx, threads=config.threads or None)
    try:
        meta = f16.metadata
        add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        g_bos, g_eos = _gguf_piece(f16, meta, "bos"), _gguf_piece(f16, meta, "eos")

        def hf_render(m: list[dict[str, str]]) -> str:
            return tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)

        def training(m: list[dict[str, str]]) -> str:
            text = fidelity.render_jinja(training_template, m, bos_token=bos, eos_token=eos)
            return fidelity.strip_bos(text, bos, add_bos)

        renderers: dict[str, fidelity.Renderer] = {
            "training": training,
            "tokenizer": lambda m: fidelity.strip_bos(hf_render(m), bos, add_bos),
        }
        for level, path in files.items():
            template = _gguf_template(path, meta if level == F16 else None)
            renderers[f"gguf:{level}"] = _gguf_renderer(template, g_bos, g_eos, add_bos)
        check = fidelity.check_templates(golden, renderers, reference="training")
        as_served = fidelity.check_templates(
            conversations,
            {"training": training, "modelfile": lambda m: fidelity.ollama_render(modelfile, m)},
            reference="training",
        )
        check = fidelity.merge_checks(check, as_served)
        hf_prompts = [tokenizer(hf_render(m), add_special_tokens=False)["input_ids"] for m in conversations]
        gguf_prompts = [f16.tokenize(fidelity.ollama_render(modelfile, m)) for m in conversations]
    finally:
        f16.close()
    return check, hf_prompts, gguf_prompts


def _gguf_piece(runner: GGUFRunner, meta: dict[str, str], which: str) -> str:
    key = f"tokenizer.ggml.{which}_token_id"
    return runner.token_to_piece(int(meta[key])) if key in meta else ""


def measure_levels(
    merged: Path,
    files: dict[str, Path],
    hf_prompts: list[list[int]],
    gguf_prompts: list[list[int]],
    stop_ids: set[int],
    config: ExportConfig,
) -> tuple[dict[str, Any], list[str]]:
    """Greedy agreement with the merged HF model, perplexity and speed of every GGUF level."""
    n = config.fidelity.n_tokens
    hf_out = fidelity.hf_greedy(merged, hf_prompts, n, stop_ids)
    levels: dict[str, Any] = {}
    failures: list[str] = []
    texts = heldout_texts(config)
    for level, path in files.items():
        runner = GGUFRunner(path, n_ctx=config.n_ctx, threads=config.threads or None)
        try:
            agreement = fidelity.measure_agreement(
                runner, level, hf_prompts, hf_out, gguf_prompts, n, stop_ids
            )
            ppl, scored = runner.perplexity(texts, config.perplexity_max_tokens)
            tps = runner.tokens_per_second(hf_prompts[0], config.speed_tokens)
        finally:
            runner.close()
        levels[level] = {
            "file": path.name,
            "size_bytes": path.stat().st_size,
            "perplexity": ppl,
            "perplexity_tokens": scored,
            "tokens_per_s": tps,
            **{k: v for k, v in agreement.as_dict().items() if k != "level"},
        }
        failures += _level_failures(level, agreement, config.fidelity)
    for row in levels.values():
        row["perplexity_delta_pct"] = 100.0 * (row["perplexity"] / levels[F16]["perplexity"] - 1.0)
    return levels, failures


def _gguf_template(path: Path, meta: dict[str, str] | None) -> str:
    from components.export.gguf import read_gguf_metadata

    meta = meta if meta is not None else read_gguf_metadata(path)
    template = meta.get("tokenizer.chat_template")
    if not template:
        raise FidelityError(
            f"{path.name} embeds no tokenizer.chat_template (Ollama would fall back to {{{{ .Prompt }}}})"
        )
    return template


def _gguf_renderer(template: str, bos: str, eos: str, add_bos: bool) -> fidelity.Renderer:
    return lambda m: fidelity.strip_bos(
        fidelity.render_jinja(template, m, bos_token=bos, eos_token=eos), bos, add_bos
    )


def _level_failures(level: str, a: fidelity.Agreement, cfg: FidelityConfig) -> list[str]:
    failures = []
    min_tok = cfg.min_token_agreement.get(level, cfg.default_min_token_agreement)
    min_pre = cfg.min_prefix_match.get(level, cfg.default_min_prefix_match)
    if not a.prompt_tokens_match:
        failures.append(
            f"{level}: served prompt tokens differ from the HF tokens (BOS or special-token handling)"
        )
    if a.token_agreement < min_tok:
        failures.append(f"{level}: token agreement {a.token_agreement:.3f} < {min_tok}")
    if a.prefix_match < min_pre:
        failures.append(f"{level}: greedy prefix match {a.prefix_match:.3f} < {min_pre}")
    return failures


# --- eval gate ---------------------------------------------------------------------------------


def eval_gate(
    model_dir: Path,
    ft_summary: dict[str, Any],
    served: Path,
    modelfile_path: Path,
    out_dir: Path,
    config: ExportConfig,
) -> dict[str, Any]:
    """Promotion gate (components/export/gate.py): candidate vs the registry's champion, or vs the
    16-bit base converted the same way when there is no champion, both scored as served."""
    from components.export import gate
    from components.export.modelfile import parse_modelfile

    head: dict[str, Any] = {"metric": gate.TASK_METRIC[ft_summary["task"]], "level": config.serve_level}
    path = config.gate.examples_path or model_dir / "eval-examples.jsonl"
    if not path.is_file():
        return {**head, "passed": False, "reason": f"no eval examples at {path}"}
    examples = [c for c in read_conversations(path) if c[-1]["role"] == "assistant"]
    if not examples:
        return {**head, "passed": False, "reason": f"no example in {path} ends with an assistant turn"}
    levels = [] if config.serve_level == F16 else [config.serve_level]
    base_config = config.model_copy(update={"quant_levels": levels})

    @functools.cache  # resolved (and hashed) once, by whichever of the two below asks first
    def base_weights() -> Any:
        return gate.gate_base(ft_summary, hashed=config.gate.cache_dir is not None)  # 15 GB for a 7B

    def base_identity() -> dict[str, Any]:  # what the base GGUF is made of, for the gate's cache
        return {
            "base_files": base_weights().files,
            "level": config.serve_level,
            "converter": LLAMA_CPP_VERSION,
        }

    def base_gguf(work: Path) -> Path:
        path = gate.base_for_gate(base_weights(), work)
        return export_gguf(path, work / "gguf", "base", base_config)[config.serve_level]

    settings = get_settings()
    try:
        result = gate.run_gate(
            ft_summary["task"],
            examples,
            served,
            parse_modelfile(modelfile_path.read_text(encoding="utf-8")),
            out_dir,
            config.gate,
            base_gguf=base_gguf,
            base_identity=base_identity,
            n_ctx=config.n_ctx,
            threads=config.threads or None,
            settings=settings,
            use_registry=bool(config.publish and settings.mlflow_tracking_uri),
        )
    except InputError as exc:  # e.g. the base weights are gone: no verdict, still a candidate
        return {**head, "passed": False, "reason": str(exc)}
    return {**head, **result}
