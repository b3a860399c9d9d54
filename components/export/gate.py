"""Promotion gate: does the candidate beat the current `champion` (or the base when there is none)?

Both sides are scored as served (their GGUF at the serve level, prompted through their Modelfile)
on the same held-out conversations (the fine-tune's eval split, or `gate.examples_path`):

- the task metric of a greedy answer against the reference (describer: ROUGE-L, facts recall
  reported; QA: token F1), `gate.max_new_tokens` at most;
- reference NLL: nats per token of the reference answer (+ end token) given the prompt.

Per metric, the per-example differences (candidate - reference side; for NLL reference - candidate,
so positive is always better) get a seeded paired bootstrap interval. `passed` only if there are
at least `gate.min_examples` examples and, for the task metric AND the NLL, the interval's lower
bound is strictly above the configured margin. A copy of the champion (or of the base) therefore
never passes: its differences are all 0. The report (table + plot) lands in the export dir and is
logged to MLflow by the registry.

The reference side is the same run after run until a promotion, so its scores are cached by
content key (`common.cache.JsonCache`, `gate.cache_dir`): what was scored (the champion GGUF's sha256, or the
base weights' file hashes, the serve level and the converter), how it was prompted (the Modelfile's
TEMPLATE, SYSTEM and stops), the examples, the scoring settings, this module's SCORING_VERSION, the
llama.cpp binding and the CPU. Greedy decoding of the same GGUF on the same settings is
deterministic, so a hit is what scoring would return; without a champion it also skips building the
base GGUF. The result says `reference_cached`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from components.common.cache import JsonCache, content_key, cpu_name, writable_cache_dir
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.text_metrics import facts_recall, rouge_l, token_f1

log = logging.getLogger(__name__)

TASK_METRIC = {"describer": "rouge_l", "qa": "token_f1"}
SCORING_VERSION = "2"  # bump when score_gguf or task_metrics change their numbers: it keys cached scores
REPORT_MD, REPORT_PNG, REPORT_JSON = "gate-report.md", "gate.png", "gate.json"


class GateConfig(StepConfig):
    """Promotion gate settings (see the module docstring)."""

    min_examples: int = Field(default=50, gt=0, description="fewer held-out examples: the gate fails")
    max_examples: int = Field(default=200, gt=0)
    examples_path: Path | None = Field(default=None, description="default <model_dir>/eval-examples.jsonl")
    margin: float = Field(
        default=0.0, description="task metric: lower bound of candidate - champion must exceed"
    )
    nll_margin: float = Field(
        default=0.0, description="reference NLL (nats/token): lower bound of champion - candidate must exceed"
    )
    max_new_tokens: int = Field(default=128, gt=0)
    bootstrap_samples: int = Field(default=2000, ge=100)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0
    cache_dir: Path | None = Field(
        default_factory=lambda: writable_cache_dir("gate"),
        description="reference-side scores by content key; null: always score",
    )


# --- statistics ----------------------------------------------------------------------------------


def paired_bootstrap(
    better: Sequence[float], worse: Sequence[float], *, samples: int, confidence: float, seed: int
) -> dict[str, float]:
    """Mean of `better - worse` and its percentile bootstrap interval (examples resampled in pairs)."""
    d = np.asarray(better, dtype=np.float64) - np.asarray(worse, dtype=np.float64)
    if d.size == 0:
        raise InputError("no paired examples to compare", field="gate")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(samples, d.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high), "n": int(d.size)}


# --- scoring one side ----------------------------------------------------------------------------


@dataclass
class SideScores:
    """Per-example scores of one model on the gate examples."""

    label: str  # "candidate", "champion v3", "base"
    outputs: list[str]
    metric: dict[str, list[float | None]]  # name -> per example (None: undefined for that row)
    nll: list[float]  # nats per reference token, per example
    nll_tokens: list[int]

    def mean(self, name: str) -> float:
        values = [v for v in self.metric[name] if v is not None]
        return float(np.mean(values)) if values else float("nan")

    @property
    def token_nll(self) -> float:
        """Token-weighted NLL over all examples (what `ref_nll` meant before the gate was paired)."""
        return float(np.dot(self.nll, self.nll_tokens) / max(sum(self.nll_tokens), 1))


def task_metrics(task: str, output: str, reference: str) -> dict[str, float | None]:
    if task == "describer":
        return {"rouge_l": rouge_l(output, reference), "facts_recall": facts_recall(output, reference)}
    return {"token_f1": token_f1(output, reference), "rouge_l": rouge_l(output, reference)}


def score_gguf(
    gguf: Path,
    render: Callable[[list[dict[str, str]]], str],
    stops: Sequence[str],
    examples: Sequence[list[dict[str, str]]],
    task: str,
    *,
    label: str,
    max_new_tokens: int,
    n_ctx: int,
    threads: int | None,
) -> SideScores:
    """Greedy answers + reference NLL of one GGUF, prompted as Ollama would (`render`)."""
    from components.export.gguf import GGUFRunner, summed_nll

    runner = GGUFRunner(gguf, n_ctx=n_ctx, threads=threads)
    try:
        stop_ids = {ids[0] for s in stops if len(ids := runner.tokenize(s, add_bos=False)) == 1}
        end = stops[0] if stops else ""
        scores = SideScores(label, [], {}, [], [])
        for conv in examples:
            prompt = runner.tokenize(render(conv[:-1]))
            reference = conv[-1]["content"]
            budget = max(1, min(max_new_tokens, n_ctx - len(prompt) - 1))
            answer = runner.tokenize(reference + end, add_bos=False)[: n_ctx - len(prompt)]
            if not answer:
                raise InputError(
                    f"a gate example's prompt fills n_ctx={n_ctx}: raise n_ctx or shorten it", field="n_ctx"
                )
            out, rows = runner.greedy_and_forced(prompt, budget, stop_ids, answer)
            text = runner.detokenize([t for t in out if t not in stop_ids]).strip()
            scores.outputs.append(text)
            for name, value in task_metrics(task, text, reference).items():
                scores.metric.setdefault(name, []).append(value)
            scores.nll.append(summed_nll(rows, answer) / len(answer))
            scores.nll_tokens.append(len(answer))
    finally:
        runner.close()
    return scores


# --- the decision --------------------------------------------------------------------------------


def decide(task: str, candidate: SideScores, reference: SideScores, config: GateConfig) -> dict[str, Any]:
    """Paired comparison of candidate vs reference side; the gate result (JSON-ready)."""
    metric = TASK_METRIC[task]
    boot = {"samples": config.bootstrap_samples, "confidence": config.confidence, "seed": config.seed}
    n = len(candidate.nll)
    rows: dict[str, dict[str, Any]] = {}
    for name in candidate.metric:
        pairs = [
            (c, r)
            for c, r in zip(candidate.metric[name], reference.metric[name], strict=True)
            if c is not None and r is not None
        ]
        if not pairs:
            continue
        ci = paired_bootstrap([c for c, _ in pairs], [r for _, r in pairs], **boot)
        rows[name] = {"candidate": candidate.mean(name), "reference": reference.mean(name), **ci}
    # Lower NLL is better: bootstrap reference - candidate so that positive means "candidate better".
    ci = paired_bootstrap(reference.nll, candidate.nll, **boot)
    rows["ref_nll"] = {"candidate": candidate.token_nll, "reference": reference.token_nll, **ci}
    rows[metric]["gating"] = True
    rows[metric]["margin"] = config.margin
    rows["ref_nll"]["gating"] = True
    rows["ref_nll"]["margin"] = config.nll_margin

    failures = []
    if n < config.min_examples:
        failures.append(f"only {n} held-out examples, the gate needs {config.min_examples}")
    for name in (metric, "ref_nll"):
        row = rows[name]
        if not row["low"] > row["margin"]:
            failures.append(
                f"{name}: {int(100 * config.confidence)}% lower bound of the improvement "
                f"{row['low']:+.4f} does not clear the margin {row['margin']:+.4f}"
            )
    return {
        "metric": metric,
        "n": n,
        "against": reference.label,
        "confidence": config.confidence,
        "bootstrap_samples": config.bootstrap_samples,
        "seed": config.seed,
        "rows": rows,
        # kept for the registry's flat metrics and older readers
        "base" if reference.label == "base" else "champion": reference.token_nll,
        "finetuned": candidate.token_nll,
        "improvement": reference.token_nll - candidate.token_nll,
        "passed": not failures,
        "reason": "; ".join(failures) if failures else "ok",
    }


# --- report --------------------------------------------------------------------------------------


def report_table(result: dict[str, Any]) -> str:
    lines = [
        f"# Promotion gate: candidate vs {result['against']} ({result['n']} held-out examples)",
        "",
        f"Paired bootstrap, {result['bootstrap_samples']} resamples, seed {result['seed']}, "
        f"{int(100 * result['confidence'])}% interval of the improvement (positive = candidate better)."
        + (
            f" The {result['against']}'s scores came from the gate cache."
            if result.get("reference_cached")
            else ""
        ),
        "",
        "| metric | candidate | " + result["against"] + " | improvement | interval | margin | gating |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        margin = f"{r['margin']:+.4f}" if "margin" in r else ""
        lines.append(
            f"| {name} | {r['candidate']:.4f} | {r['reference']:.4f} | {r['mean']:+.4f} | "
            f"[{r['low']:+.4f}, {r['high']:+.4f}] | {margin} | {'yes' if r.get('gating') else ''} |"
        )
    lines += ["", f"**{'PASSED' if result['passed'] else 'FAILED'}**: {result['reason']}", ""]
    return "\n".join(lines)


def plot_report(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["rows"])
    rows = [result["rows"][n] for n in names]
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.5 * len(names)))
    y = np.arange(len(names))
    means = [r["mean"] for r in rows]
    err = np.array([[r["mean"] - r["low"] for r in rows], [r["high"] - r["mean"] for r in rows]])
    colors = ["tab:green" if r["low"] > r.get("margin", float("-inf")) else "tab:red" for r in rows]
    for i, color in enumerate(colors):
        ax.errorbar(means[i], y[i], xerr=err[:, i : i + 1], fmt="o", color=color, capsize=4)
    for i, r in enumerate(rows):
        if "margin" in r:
            ax.plot([r["margin"]] * 2, [i - 0.35, i + 0.35], color="black", linewidth=1)
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(y, names)
    ax.set_xlabel(f"improvement over {result['against']} ({int(100 * result['confidence'])}% interval)")
    ax.set_title(f"gate {'passed' if result['passed'] else 'failed'} (n={result['n']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], candidate: SideScores, reference: SideScores, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_MD).write_text(report_table(result), encoding="utf-8")
    plot_report(result, out_dir / REPORT_PNG)
    detail = {
        **result,
        "outputs": [
            {"candidate": c, reference.label: r}
            for c, r in zip(candidate.outputs, reference.outputs, strict=True)
        ],
    }
    (out_dir / REPORT_JSON).write_text(json.dumps(detail, indent=2, ensure_ascii=False), encoding="utf-8")


def compare(
    task: str,
    candidate: SideScores,
    reference: SideScores,
    config: GateConfig,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result = {**decide(task, candidate, reference, config), **(extra or {})}
    write_report(result, candidate, reference, out_dir)
    return result


# --- the reference side's scores, cached by content key --------------------------------------------


def side_key(
    identity: dict[str, Any], modelfile: Any, examples: Sequence[list[dict[str, str]]], task: str,
    score: dict[str, Any],
) -> str:  # fmt: skip
    """Content key of one side's scores (module docstring): sha256 of everything they depend on."""
    import llama_cpp

    return content_key(
        {
            "scoring": SCORING_VERSION,
            "identity": identity,
            "prompt": {"template": modelfile.template, "system": modelfile.system, "stops": modelfile.stops},
            "task": task,
            "examples": list(examples),
            "score": score,
            "llama_cpp": llama_cpp.__version__,
            "cpu": cpu_name(),
        }
    )


# --- orchestration (called by core.eval_gate) ------------------------------------------------------


def gate_base(ft_summary: dict[str, Any], *, hashed: bool = True) -> Any:
    """The base the gate compares with (`BaseWeights`; `hashed`: with every file's sha256, which the
    cache's key needs): the original weights when the fine-tune named them (`merge_base_model`), else
    `base_model`."""
    from components.common.base_weights import file_hashes, resolve_base_weights

    config = ft_summary.get("config") or {}
    spec = config.get("merge_base_model") or ft_summary.get("base_model") or ""
    if not spec:
        raise InputError("finetune-summary.json names no base_model", field="base_model")
    weights = resolve_base_weights(str(spec))
    if hashed and not weights.files:  # a local directory: resolving does not hash it
        weights = replace(weights, files=file_hashes(weights.path))
    return weights


def base_for_gate(weights: Any, work_dir: Path) -> Path:
    """A 16-bit HF dir of the base, dequantized on CPU when it is a bnb-4bit checkpoint (llama.cpp's
    converter cannot read bnb tensors)."""
    from components.common.bnb import dequantize_checkpoint, is_bnb_4bit

    if is_bnb_4bit(weights.path):
        log.info("base %s is a bnb-4bit checkpoint: dequantizing to bfloat16 for the gate", weights.spec)
        return dequantize_checkpoint(weights.path, work_dir / "base-16bit", dtype="bfloat16")
    return weights.path


def run_gate(
    task: str,
    examples: list[list[dict[str, str]]],
    served: Path,
    modelfile: Any,
    out_dir: Path,
    config: GateConfig,
    *,
    base_gguf: Callable[[Path], Path],
    base_identity: Callable[[], dict[str, Any]] | None = None,
    n_ctx: int,
    threads: int | None,
    settings: Any = None,
    use_registry: bool = True,
) -> dict[str, Any]:
    """Score the candidate and the champion (from the registry) or the base (`base_gguf(work_dir)`,
    identified for the cache by `base_identity()`; without it the base is always scored)."""
    import tempfile

    from components.common.storage import sha256_file
    from components.export import fidelity
    from components.export.modelfile import parse_modelfile

    examples = examples[: config.max_examples]
    score = {"max_new_tokens": config.max_new_tokens, "n_ctx": n_ctx, "threads": threads}
    cache = JsonCache(config.cache_dir) if config.cache_dir else None
    with tempfile.TemporaryDirectory(prefix="gate-", dir=out_dir) as tmp:
        champion = None
        if use_registry:
            from components.export.registry import download_champion

            champion = download_champion(task, Path(tmp), settings)
        if champion is not None:
            ref_modelfile = parse_modelfile(champion["modelfile"].read_text(encoding="utf-8"))
            label = "champion"
            identity = {"gguf_sha256": sha256_file(champion["gguf"])}
        else:
            ref_modelfile, label = modelfile, "base"
            identity = base_identity() if base_identity and cache else None
        key = side_key(identity, ref_modelfile, examples, task, score) if cache and identity else None
        hit = cache.get(key) if cache and key else None
        reference = SideScores(**hit) if hit else None
        log.info(
            "gate: candidate vs %s on %d examples%s",
            label,
            len(examples),
            " (its scores cached)" * bool(reference),
        )
        if reference is None:
            ref_file = champion["gguf"] if champion is not None else base_gguf(Path(tmp))
            reference = score_gguf(
                ref_file,
                lambda m: fidelity.ollama_render(ref_modelfile, m),
                ref_modelfile.stops,
                examples,
                task,
                label=label,
                **score,
            )
            if cache and key:
                cache.put(key, asdict(reference))
            cached = False
        else:
            cached = True
    candidate = score_gguf(
        served,
        lambda m: fidelity.ollama_render(modelfile, m),
        modelfile.stops,
        examples,
        task,
        label="candidate",
        **score,
    )
    extra: dict[str, Any] = {"reference_cached": cached}
    if champion is not None:
        extra["champion_version"] = champion["version"]
    return compare(task, candidate, reference, config, out_dir, extra)
