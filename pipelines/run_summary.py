"""The end of a run, for people: eval table (base vs fine-tuned per task), registry, URLs.

Everything is read from the run's own `export-summary.json` files (one per task), so the same
function serves `prodtune run`, `prodtune demo` and the docs generator.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Metrics shown in the terminal (the full set is in eval.json / docs/finetuning.md).
SHOWN = ("eval_loss", "rouge_l", "facts_recall", "token_f1", "stop_rate")
LOWER_IS_BETTER = {"eval_loss"}


@dataclass(frozen=True)
class TaskResult:
    task: str
    n_eval: int
    base: dict[str, Any]
    finetuned: dict[str, Any]
    gate: dict[str, Any]
    registry: dict[str, Any]
    export_dir: Path


def load_task_results(outputs: dict[str, Path]) -> list[TaskResult]:
    """One TaskResult per exported model dir that holds an export-summary.json."""
    results = []
    for task, path in outputs.items():
        summary_file = Path(path) / "export-summary.json"
        if not summary_file.is_file():
            continue
        s = json.loads(summary_file.read_text(encoding="utf-8"))
        evals = s.get("finetune_eval") or {}
        results.append(
            TaskResult(
                task=s.get("task", task),
                n_eval=int(evals.get("n_eval", 0)),
                base=evals.get("base", {}),
                finetuned=evals.get("finetuned", {}),
                gate=s.get("eval_gate", {}),
                registry=s.get("registry", {}),
                export_dir=Path(path),
            )
        )
    return results


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return "-" if value is None else str(value)


def eval_rows(result: TaskResult) -> list[tuple[str, str, str, str]]:
    """(metric, base, fine-tuned, change) for the metrics both sides have."""
    rows = []
    for metric in SHOWN:
        b, f = result.base.get(metric), result.finetuned.get(metric)
        if b is None and f is None:
            continue
        change = ""
        if isinstance(b, float) and isinstance(f, float) and not (math.isnan(b) or math.isnan(f)):
            change = f"{f - b:+.3f}"
        name = f"{metric} (lower is better)" if metric in LOWER_IS_BETTER else metric
        rows.append((name, fmt(b), fmt(f), change))
    return rows


def gate_text(gate: dict[str, Any]) -> str:
    """The gate's verdict, its NLL improvement and, when it failed, why (a better NLL alone does
    not pass it: the task metric's interval must clear its margin too)."""
    if not gate:
        return "-"
    verdict = "passed" if gate.get("passed") else "failed"
    improvement = gate.get("improvement")
    extra = f" (improvement {improvement:+.3f} nats/token)" if isinstance(improvement, float) else ""
    why = f": {gate['reason']}" if not gate.get("passed") and gate.get("reason") else ""
    return verdict + extra + why


def print_summary(
    console: Console, results: list[TaskResult], urls: dict[str, str], run_id: str, seconds: float
) -> None:
    title = f"prodtune run {run_id}: done in {seconds / 60:.1f} min"
    if console.is_terminal:
        console.rule(title)
    else:  # a rule would be as wide as the (unbounded) pipe console
        console.print(f"== {title} ==", highlight=False)
    for r in results:
        table = Table(title=f"{r.task}: base vs fine-tuned ({r.n_eval} held-out rows)", title_justify="left")
        for col in ("metric", "base", "fine-tuned", "change"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for row in eval_rows(r):
            table.add_row(*row)
        console.print(table)
    reg = Table(title="registered models", title_justify="left")
    for col in ("task", "model", "version", "aliases", "eval gate", "exported to"):
        reg.add_column(col, overflow="fold")
    for r in results:
        registry = r.registry
        reg.add_row(
            r.task,
            str(registry.get("model_name", "-")),
            str(registry.get("version", "-")),
            ",".join(registry.get("aliases", [])) or str(registry.get("skipped", "-")),
            gate_text(r.gate),
            str(r.export_dir),
        )
    console.print(reg)
    for name, url in urls.items():
        console.print(f"{name:>8}: {url}", highlight=False)
