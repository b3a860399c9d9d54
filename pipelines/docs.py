"""Generated sections of docs/dataset.md, docs/finetuning.md and docs/architecture.md.

    prodtune docs --from-run local_outputs/prodtune-<...>   # snapshot a run into docs/runs/latest, regenerate
    prodtune docs                                           # regenerate from the committed snapshot
    prodtune docs --check                                   # exit 1 if a generated section is stale

Each generated section sits between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->`;
everything outside the markers is hand-written and left alone. Inputs are only committed files: the
run snapshot (`docs/runs/latest/`: the run's summaries, small), the YAML recipes in
`pipelines/configs/`, the synthesis prompt, the GPU benchmark results and the pipeline definition
itself, so `tests/unit/test_docs_generated.py` can regenerate and compare.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipelines.run_summary import gate_text

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path("docs/runs/latest")
MEDIA = Path("docs/media")
DOCS = ("docs/dataset.md", "docs/finetuning.md", "docs/architecture.md")
_MARKER = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<end><!-- END GENERATED: (?P=name) -->)",
    re.S,
)
TASKS = ("describer", "qa")


class DocsError(Exception):
    pass


# ---------------------------------------------------------------------------------------- snapshot
def find_run_dir(path: Path) -> Path:
    """The kfp.local run dir (holds prep/, sampling/, ...): `path` itself, or its newest child run."""
    path = Path(path)
    if (path / "prep").is_dir():
        return path
    runs = sorted((p for p in path.glob("*/prep") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DocsError(f"no pipeline run under {path} (expected <run>/prep/)")
    return runs[-1].parent


def snapshot_run(run_dir: Path, root: Path = ROOT, examples: int = 3) -> Path:
    """Copy what the documents quote from a run into docs/runs/latest (and loss plots to docs/media)."""
    run = find_run_dir(run_dir)
    dest = root / SNAPSHOT
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    # A run that stopped early (or is still going) snapshots what it has; the documents say what is missing.
    for name in ("prep-summary.json", "sampling-summary.json", "synthesis-summary.json"):
        hits = sorted(run.glob(f"*/*/{name}"))
        if hits:
            shutil.copy(hits[0], dest / name)
    pairs_files = sorted(run.glob("synthesis/*/dados-fine-tunning.jsonl"))
    if pairs_files:
        pairs = pairs_files[0].read_text(encoding="utf-8").splitlines()
        (dest / "synthesis-examples.jsonl").write_text("\n".join(pairs[:examples]) + "\n", encoding="utf-8")
    (root / MEDIA).mkdir(parents=True, exist_ok=True)
    for summary in sorted(run.glob("finetune*/*/finetune-summary.json")):
        task = json.loads(summary.read_text(encoding="utf-8"))["task"]
        shutil.copy(summary, dest / f"finetune-{task}.json")
        shutil.copy(summary.parent / "eval.json", dest / f"eval-{task}.json")
        if (summary.parent / "loss.png").is_file():
            shutil.copy(summary.parent / "loss.png", root / MEDIA / f"loss-{task}.png")
    for summary in sorted(run.glob("export*/*/export-summary.json")):
        task = json.loads(summary.read_text(encoding="utf-8"))["task"]
        shutil.copy(summary, dest / f"export-{task}.json")
    (dest / "run.json").write_text(json.dumps({"run_dir": run.name}, indent=2) + "\n", encoding="utf-8")
    return dest


# ---------------------------------------------------------------------------------------- helpers
def _load(root: Path, name: str) -> Any:
    """A snapshot file's JSON, or None when the snapshot has no such file (the run had not got there)."""
    path = root / SNAPSHOT / name
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _absent(name: str) -> str:
    return f"_Not in the committed run snapshot (`docs/runs/latest/{name}`): the run had not produced it._\n"


def _raw_yaml(path: Path) -> dict[str, Any]:
    # Raw, not load_config: `${PRODTUNE_MODELS_DIR:-...}` stays as written, so output is machine-independent.
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _table(header: list[str], rows: list[list[Any]], align: str = "") -> str:
    align = align or "-" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value == value else "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("prices", "parameters"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _code(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.rstrip()}\n```\n"


# ---------------------------------------------------------------------------------------- dataset.md
def prep_counts(root: Path) -> str:
    s = _load(root, "prep-summary.json")
    if s is None:
        return _absent("prep-summary.json")
    read = s["lines_read"]
    rows = [["read", read, "100.0%"], ["**kept**", s["kept"], f"{100 * s['kept'] / max(read, 1):.1f}%"]]
    for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
        rows.append([f"dropped: `{reason}`", n, f"{100 * n / max(read, 1):.1f}%"])
    check = read == s["kept"] + sum(s["dropped"].values())
    note = f"\n`lines_read == kept + sum(dropped)`: {'holds' if check else 'DOES NOT HOLD'}.\n"
    return _table(["lines", "count", "share"], rows, "lrr") + note


def prep_config(root: Path) -> str:
    cfg = _raw_yaml(root / "pipelines/configs/prep.yaml")
    return _code(yaml.safe_dump(cfg, sort_keys=False), "yaml")


def sampling_counts(root: Path) -> str:
    s = _load(root, "sampling-summary.json") or {}
    prod = _raw_yaml(root / "pipelines/configs/sampling.yaml")
    local = _raw_yaml(root / "pipelines/configs/local/sampling.yaml")
    rows = [[k, _yaml_value(prod.get(k)), _yaml_value(local.get(k))] for k in ("n", "seed", "eval_fraction")]
    run = ", ".join(f"{k} {s[k]:,}" for k in ("population", "sampled", "train", "eval") if k in s)
    latest = f"\nLatest run: {run}.\n" if run else "\n" + _absent("sampling-summary.json")
    return _table(["setting", "production", "embedded demo"], rows) + latest


def synthesis_prompt(root: Path) -> str:
    name = _raw_yaml(root / "pipelines/configs/local/synthesis.yaml").get("prompt", "qa_v1")
    prompt = _raw_yaml(root / "components/synthesis/prompts" / f"{name}.yaml")
    return (
        f"Prompt `{prompt.get('version', name)}` (`components/synthesis/prompts/{name}.yaml`).\n\n"
        f"System message:\n\n{_code(prompt['system'], 'text')}\nUser message:\n\n{_code(prompt['user'], 'text')}"
    )


def synthesis_examples(root: Path) -> str:
    s = _load(root, "synthesis-summary.json")
    if s is None:
        return _absent("synthesis-summary.json")
    quarantined = s.get("quarantined", {})
    asked = s.get("asked", s["products"])  # summaries before `teacher_products` asked about every product
    lines = [
        f"Latest run: {s['products']:,} products, the teacher asked about {asked:,}, {s['with_pairs']:,} "
        f"with at least one kept pair ({100 * s['with_pairs'] / max(asked, 1):.0f}% of those asked); quarantined: "
        + (", ".join(f"`{k}` {v:,}" for k, v in sorted(quarantined.items())) or "none")
        + ".",
        "",
    ]
    path = root / SNAPSHOT / "synthesis-examples.jsonl"
    for raw in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        if not raw.strip():
            continue
        row = json.loads(raw)
        turns = {m["role"]: m["content"] for m in row["messages"]}
        user = " ".join(turns.get("user", "").split())
        lines += [
            f"- product `{row.get('uid')}`: **Q:** {user[-220:]}",
            f"  **A:** {' '.join(turns.get('assistant', '').split())[:300]}",
        ]
    return "\n".join(lines) + "\n"


def catalogue_coherence(root: Path) -> str:
    path = root / "benchmarks/catalogue/results.json"
    if not path.is_file():
        raise DocsError(f"{path} missing: run `python benchmarks/catalogue/coherence.py`")
    r = json.loads(path.read_text(encoding="utf-8"))
    base = r["shuffled_baseline"]["exact"]
    rows = [
        [
            "generated: title vs its own description",
            r["exact"]["median"],
            r["exact"]["mean"],
            f"{100 * r['exact']['share_ge_0.6']:.0f}%",
        ],
        [
            "baseline: title vs a shuffled description",
            base["median"],
            base["mean"],
            f"{100 * base['share_ge_0.6']:.0f}%",
        ],
    ]
    ex = r.get("examples", [{}])[0]
    example = f'\nExample: "{ex["title"]}" -> "{ex["content"][:200]}..."\n' if ex else ""
    return (
        f"Share of a title's content words found in its own description, over the {r['kept_rows']:,} rows "
        f"prep keeps from {r['lines']:,} generated lines (generator version {r['generator_version']}, "
        "`benchmarks/catalogue/results.json`):\n\n"
        + _table(["pairing", "median", "mean", "rows >= 0.6"], rows, "lrrr")
        + example
    )


# ---------------------------------------------------------------------------------------- finetuning.md
RECIPES = {
    "describer (GPU)": "pipelines/configs/describer.yaml",
    "qa (GPU)": "pipelines/configs/qa.yaml",
    "describer (CPU demo)": "pipelines/configs/local/describer.yaml",
    "qa (CPU demo)": "pipelines/configs/local/qa.yaml",
}
# What every FinetuneConfig parameter does (tests check that none is missing).
PARAM_NOTES = {
    "task": "which model: `describer` (title -> description) or `qa` (question + context -> answer)",
    "base_model": "base weights: a local dir, an HF repo id[@revision] (downloaded in the pod with HF_TOKEN) or an s3:// prefix; the GPU recipes use Unsloth's pre-quantized 4-bit checkpoints",
    "merge_base_model": "the 16-bit original of a 4-bit `base_model`: the adapter is merged onto it (never into 4-bit weights) and the export gate scores it",
    "date_string": "Llama 3.x only: the fixed 'Today Date' rendered into every prompt (training, GGUF and Modelfile agree; nothing depends on today)",
    "chat_template": "`auto` = the base model's own template; the exact string is saved and reused by export and serving",
    "backend": "`unsloth` (CUDA) or `hf` (transformers + PEFT + TRL); `auto` picks Unsloth when CUDA and it are there",
    "device": "`cuda`, `cpu` or `auto`",
    "lora.r": "LoRA rank: size of the low-rank update per adapted matrix",
    "lora.alpha": "LoRA scaling (update is scaled by alpha / r)",
    "lora.dropout": "dropout on the LoRA path; 0 keeps Unsloth's fast kernels",
    "lora.target_modules": "which linear layers get adapters (all attention and MLP projections)",
    "quantization.load_in_4bit": "QLoRA: the frozen base in 4-bit NF4 (CUDA only); the main lever of the 16 GB budget",
    "max_seq_length": "tokens per row; longer rows are quarantined, not cut (a cut answer would teach cut answers)",
    "per_device_batch_size": "rows per forward pass",
    "grad_accum": "forward passes per optimizer step (effective batch = batch x accum)",
    "gradient_checkpointing": "recompute activations in backward: less memory, ~20-30% more time",
    "cpu_threads": "torch threads on CPU (null = the cores not busy at start)",
    "packing": "pack rows padding-free into `max_seq_length` rows (no row attends to another); `auto` = on CUDA",
    "precision": "compute dtype; `auto` = on CUDA bf16 from compute capability 8.0, fp16 below (a T4); on CPU bf16 autocast where the CPU has it natively (AMX, AVX512-BF16), else fp32",
    "learning_rate": "peak learning rate of the LoRA weights",
    "lr_scheduler": "decay after warm-up",
    "warmup_ratio": "share of steps with a rising learning rate",
    "warmup_steps": "fixed warm-up step count (instead of the ratio)",
    "weight_decay": "L2 pull on the LoRA weights",
    "optim": "optimizer (null = `adamw_8bit` with Unsloth, `adamw_torch` with transformers + PEFT)",
    "num_epochs": "passes over the training rows",
    "max_steps": "fixed optimizer steps; wins over num_epochs",
    "seed": "seed for data order, LoRA init and the held-out split",
    "save_steps": "checkpoint every N steps (resume after a lost GPU node)",
    "save_total_limit": "checkpoints kept",
    "logging_steps": "loss logged (MLflow, loss plot) every N steps",
    "eval.max_examples": "held-out rows generated and scored before and after training",
    "eval.max_new_tokens": "generation budget per held-out row",
    "eval.batch_size": "rows per generation batch",
    "eval.holdout_fraction": "share held out when no eval file is given",
    "eval.cache_dir": "where the base column of the eval is kept by content key and reused while the base and the held-out rows stay the same (`null`: always evaluate); `$HOME`'s cache where `$PRODTUNE_CACHE` is read-only",
}


def config_defaults() -> dict[str, Any]:
    """Every FinetuneConfig parameter (nested ones as `lora.r`) with its default ("required" if none)."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    from components.finetune.core import FinetuneConfig

    def default(field: Any) -> Any:
        shown = (field.json_schema_extra or {}).get("doc_default")  # e.g. a path that depends on the machine
        if shown is not None:
            return shown
        if field.default_factory is not None:
            return field.default_factory()
        return "required" if field.default is PydanticUndefined else field.default

    out: dict[str, Any] = {}
    for name, field in FinetuneConfig.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out.update({f"{name}.{n}": default(f) for n, f in sub.model_fields.items()})
        else:
            out[name] = default(field)
    return out


def recipes(root: Path) -> str:
    loaded = {col: _flatten(_raw_yaml(root / path)) for col, path in RECIPES.items()}
    rows = []
    for name, dflt in config_defaults().items():
        values = [
            _yaml_value(loaded[col][name]) if name in loaded[col] else f"({_yaml_value(dflt)})"
            for col in RECIPES
        ]
        rows.append([f"`{name}`", *values, PARAM_NOTES.get(name, "")])
    return (
        _table(["parameter", *RECIPES, "what it does"], rows)
        + "\n(parenthesised: not in the file, the default applies)\n"
    )


def _yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list) and len(v) == 7:
        return "all 7 projections"
    return str(v)


def gpu_budget(root: Path) -> str:
    data = json.loads((root / "benchmarks/finetune_gpu/results.json").read_text(encoding="utf-8"))
    rows = []
    for case in data["cases"].values():
        if not case.get("ok") or "params" not in case:  # the budget cases: full-size shapes only
            continue
        c = case["config"]
        peak = max(case.get("load_peak_reserved_gib", 0), case.get("train_peak_reserved_gib", 0))
        rows.append(
            [
                f"{case['model']} ({case['params'] / 1e9:.2f} B params)",
                case["recipe"],
                case["backend"],
                f"{c['max_seq_length']} x {c['per_device_batch_size']} x {c['grad_accum']}",
                "yes" if c.get("load_in_4bit") else "no",
                "yes" if c.get("gradient_checkpointing") else "no",
                round(peak, 2),
                "yes" if peak < 16 else "**no**",
            ]
        )
    header = [
        "model",
        "recipe",
        "backend",
        "seq x batch x accum",
        "4-bit",
        "grad. ckpt",
        "peak reserved GiB",
        "< 16 GiB",
    ]
    return (
        f"Measured on {data['card']} ({data['date_utc']}), `benchmarks/finetune_gpu/results.json`:\n\n"
        + _table(header, rows, "llllllrl")
    )


METRICS = ("eval_loss", "rouge_l", "facts_recall", "token_f1", "stop_rate", "mean_words")


def eval_section(task: str) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        ev = _load(root, f"eval-{task}.json")
        ft = _load(root, f"finetune-{task}.json")
        if ev is None or ft is None:
            return _absent(f"eval-{task}.json")
        rows = []
        for m in METRICS:
            b, f = ev["base"].get(m), ev["finetuned"].get(m)
            if b is None and f is None:
                continue
            change = f"{f - b:+.3f}" if isinstance(b, float) and isinstance(f, float) else ""
            rows.append([m + (" (lower is better)" if m == "eval_loss" else ""), b, f, change])
        head = (
            f"Base `{Path(str(ft.get('base_model', '?'))).name}`, backend `{ft.get('backend')}`, "
            f"{ft.get('steps')} steps on {ft.get('data', {}).get('train_rows', '?')} rows; "
            f"{ev.get('n_eval', 0)} held-out rows.\n\n"
        )
        table = _table(["metric", "base", "fine-tuned", "change"], rows, "lrrr")
        exp = _load(root, f"export-{task}.json")
        gate = ""
        if exp:
            g, reg = exp.get("eval_gate", {}), exp.get("registry", {})
            gate = (
                f"\nExport eval gate on `{exp.get('serve_level')}`: {gate_text(g)}"
                + (
                    f"; registered `{reg['model_name']}` v{reg['version']} with aliases {', '.join(reg.get('aliases', []))}"
                    if reg.get("version")
                    else ""
                )
                + ".\n"
            )
        plot = (
            f"\n![{task} loss](media/loss-{task}.png)\n"
            if (root / MEDIA / f"loss-{task}.png").is_file()
            else ""
        )
        samples = "".join(
            f"\n- input `{' '.join(s['input'].split())[-120:]}`\n  - reference: {' '.join(s['reference'].split())[:200]}"
            f"\n  - base: {' '.join(s['base'].split())[:200]}\n  - fine-tuned: {' '.join(s['finetuned'].split())[:200]}"
            for s in ev.get("samples", [])[:2]
        )
        return head + table + gate + plot + ("\nSample outputs:\n" + samples + "\n" if samples else "")

    return render


# ---------------------------------------------------------------------------------------- architecture.md
def pipeline_diagram(root: Path) -> str:
    """Mermaid graph of the compiled pipeline's tasks (display names, dependencies) + serving."""
    from pipelines.pipeline import build_pipeline

    spec = build_pipeline(platform=None).pipeline_spec
    tasks = spec.root.dag.tasks
    ids = {name: re.sub(r"\W", "_", name) for name in tasks}
    lines = ["flowchart LR", '    input[("trn.json<br/>(S3 or file)")]']
    for name in sorted(tasks):
        lines.append(f'    {ids[name]}["{tasks[name].task_info.name or name}"]')
    for name in sorted(tasks):
        deps = list(tasks[name].dependent_tasks)
        for dep in sorted(deps):
            lines.append(f"    {ids[dep]} --> {ids[name]}")
        if not deps:
            lines.append(f"    input --> {ids[name]}")
    lines += [
        '    registry[("MLflow registry<br/>candidate / champion")]',
        '    s3[("S3: GGUF, Modelfile,<br/>adapter, summaries")]',
    ]
    for name in sorted(tasks):
        if (tasks[name].task_info.name or name).startswith("export"):
            lines += [f"    {ids[name]} --> s3", f"    {ids[name]} --> registry"]
    lines += [
        '    subgraph serving["serving"]',
        '        router{"LangGraph router<br/>describe or answer"}',
        '        describer["describer model"]',
        '        qa["QA model"]',
        '        store[("vector store<br/>embedded / Weaviate")]',
        "        router -->|title| describer",
        "        router -->|question| store --> qa",
        "    end",
        '    user(["API /v1/chat/completions<br/>or Streamlit UI"]) --> router',
        "    registry -. resolves alias .-> describer",
        "    registry -. resolves alias .-> qa",
        "    s3 -. GGUF .-> describer",
        "    s3 -. GGUF .-> qa",
    ]
    return _code("\n".join(lines), "mermaid")


def artifact_locations(root: Path) -> str:
    from components.export.registry import CANDIDATE, CHAMPION, TAG_GGUF_SHA, TAG_GGUF_URI, model_name

    prefix = _raw_yaml(root / "pipelines/configs/export.yaml").get("s3_prefix", "models")
    rows = []
    for task in TASKS:
        exp = _load(root, f"export-{task}.json")
        manifest = (exp or {}).get("registry", {}).get("manifest", {})
        served = next((v["uri"] for k, v in manifest.items() if k.endswith(".gguf") and "Q4_K_M" in k), None)
        example = f"e.g. `{served}`" if served else ""
        rows.append(
            [
                f"{task} GGUF + Modelfile + adapter",
                f"`s3://<bucket>/{prefix}/{task}/<mlflow run id>/`",
                f"`{model_name(task)}` versions, aliases `{CANDIDATE}` / `{CHAMPION}`; tags `{TAG_GGUF_URI}`, `{TAG_GGUF_SHA}`",
                example,
            ]
        )
    rows += [
        [
            "step runs (params, metrics, summaries, loss plots)",
            "`s3://<bucket>/mlflow/` (proxied by the MLflow server)",
            "experiment `prodtune`, one run per step, tag `prodtune.pipeline_run`",
            "",
        ],
        [
            "pipeline artifacts between steps",
            "KFP: the pipeline root (`s3://...` on a cluster); local: `local_outputs/<run>/<task>/`",
            "-",
            "",
        ],
    ]
    return _table(["artifact", "where (S3)", "MLflow", "latest run"], rows)


SECTIONS: dict[str, dict[str, Callable[[Path], str]]] = {
    "docs/dataset.md": {
        "prep-counts": prep_counts,
        "prep-config": prep_config,
        "sampling": sampling_counts,
        "synthesis-prompt": synthesis_prompt,
        "synthesis-examples": synthesis_examples,
        "catalogue-coherence": catalogue_coherence,
    },
    "docs/finetuning.md": {
        "recipes": recipes,
        "gpu-budget": gpu_budget,
        "eval-describer": eval_section("describer"),
        "eval-qa": eval_section("qa"),
    },
    "docs/architecture.md": {
        "pipeline-diagram": pipeline_diagram,
        "artifact-locations": artifact_locations,
    },
}


# ---------------------------------------------------------------------------------------- apply
def fill(text: str, sections: dict[str, Callable[[Path], str]], root: Path, doc: str) -> str:
    """`text` with every generated section re-rendered; every section must have its markers."""
    seen: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in sections:
            raise DocsError(f"{doc}: unknown generated section {name!r}")
        seen.add(name)
        return m["begin"] + sections[name](root) + m["end"]

    out = _MARKER.sub(sub, text)
    missing = set(sections) - seen
    if missing:
        raise DocsError(f"{doc}: no markers for {', '.join(sorted(missing))}")
    return out


def render_all(root: Path = ROOT) -> dict[Path, str]:
    return {
        root / doc: fill((root / doc).read_text(encoding="utf-8"), secs, root, doc)
        for doc, secs in SECTIONS.items()
    }


def stale(root: Path = ROOT) -> list[Path]:
    return [path for path, text in render_all(root).items() if path.read_text(encoding="utf-8") != text]


def write_all(root: Path = ROOT) -> list[Path]:
    changed = []
    for path, text in render_all(root).items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
