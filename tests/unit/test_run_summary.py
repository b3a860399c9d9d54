"""The end-of-run summary reads the run's export summaries: eval per task, registry, URLs."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from pipelines.run_summary import eval_rows, load_task_results, print_summary


def _export(path: Path, task: str, passed: bool) -> Path:
    path.mkdir(parents=True)
    summary = {
        "task": task,
        "finetune_eval": {
            "base": {"eval_loss": 2.5, "rouge_l": 0.1},
            "finetuned": {"eval_loss": 1.25, "rouge_l": 0.3},
            "n_eval": 8,
        },
        "eval_gate": {
            "passed": passed,
            "improvement": 0.4 if passed else -0.2,
            "reason": "ok"
            if passed
            else "token_f1: 95% lower bound of the improvement -0.0500 does not clear",
        },
        "registry": {
            "model_name": f"prodtune-{task}",
            "version": "7",
            "aliases": ["candidate"] + ["champion"] * passed,
        },
    }
    (path / "export-summary.json").write_text(json.dumps(summary))
    return path


def test_summary_shows_eval_registry_and_urls(tmp_path: Path) -> None:
    outputs = {
        "describer": _export(tmp_path / "export" / "exported", "describer", True),
        "qa": _export(tmp_path / "export-2" / "exported", "qa", False),
        "missing": tmp_path / "nothing-here",
    }
    results = load_task_results(outputs)
    assert [r.task for r in results] == ["describer", "qa"]
    assert eval_rows(results[0])[0] == ("eval_loss (lower is better)", "2.500", "1.250", "-1.250")
    out = io.StringIO()
    print_summary(Console(file=out, width=1000), results, {"MLflow": "http://127.0.0.1:5050"}, "abc123", 600)
    text = out.getvalue()
    assert "== prodtune run abc123: done in 10.0 min ==" in text
    assert "describer: base vs fine-tuned (8 held-out rows)" in text
    assert "candidate,champion" in text and "passed (improvement +0.400 nats/token)" in text
    assert "failed (improvement -0.200 nats/token): token_f1: 95% lower bound" in text
    assert "http://127.0.0.1:5050" in text
