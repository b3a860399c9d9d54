"""docs/dataset.md, finetuning.md, architecture.md: generated sections match their committed inputs.

If this fails after a change to a recipe, the prompt, the pipeline or the run snapshot, run
`prodtune docs` (or `prodtune docs --from-run local_outputs` after a new demo run) and commit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines import docs

ROOT = Path(__file__).resolve().parents[2]


def test_committed_documents_are_not_stale() -> None:
    stale = docs.stale(ROOT)
    assert not stale, (
        f"stale generated sections in {[str(p.relative_to(ROOT)) for p in stale]}: run `prodtune docs`"
    )


def test_every_finetune_parameter_is_explained() -> None:
    missing = [name for name in docs.config_defaults() if not docs.PARAM_NOTES.get(name)]
    assert not missing, f"add these to pipelines/docs.py PARAM_NOTES: {missing}"


def _copy_inputs(tmp: Path) -> Path:
    for rel in (
        "docs",
        "pipelines/configs",
        "components/synthesis/prompts",
        "benchmarks/finetune_gpu",
        "benchmarks/catalogue",
    ):
        shutil.copytree(ROOT / rel, tmp / rel)
    return tmp


def test_a_changed_input_makes_the_documents_stale(tmp_path: Path) -> None:
    root = _copy_inputs(tmp_path)
    assert docs.stale(root) == []
    summary = root / docs.SNAPSHOT / "prep-summary.json"
    data = json.loads(summary.read_text())
    data["kept"] += 1
    summary.write_text(json.dumps(data))
    assert docs.stale(root) == [root / "docs/dataset.md"]
    docs.write_all(root)
    assert docs.stale(root) == []
    assert f"{data['kept']:,}" in (root / "docs/dataset.md").read_text()


def test_prose_outside_markers_is_kept_and_markers_are_required(tmp_path: Path) -> None:
    root = _copy_inputs(tmp_path)
    doc = root / "docs/architecture.md"
    doc.write_text(doc.read_text() + "\nHand-written tail.\n")
    docs.write_all(root)
    assert doc.read_text().endswith("Hand-written tail.\n")
    doc.write_text(doc.read_text().replace("<!-- BEGIN GENERATED: artifact-locations -->", ""))
    with pytest.raises(docs.DocsError, match="artifact-locations"):
        docs.render_all(root)


def test_pipeline_diagram_follows_the_pipeline_definition() -> None:
    text = docs.pipeline_diagram(ROOT)
    for name in ("prep", "sampling", "synthesis", "finetune-describer", "finetune-qa", "export-qa"):
        assert f'"{name}"' in text
    assert "prep --> sampling" in text and "synthesis --> finetune" in text


def _fake_run(run: Path) -> Path:
    """A kfp.local run dir laid out as the local runner writes it, with the files the docs quote."""

    def put(rel: str, data: object) -> None:
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")

    put("prep/processed/prep-summary.json", {"lines_read": 10, "kept": 6, "dropped": {"short_content": 4}})
    put("sampling/sample/sampling-summary.json", {"population": 6, "sampled": 4, "train": 3, "eval": 1})
    put("synthesis/dataset/synthesis-summary.json", {"products": 4, "with_pairs": 3, "quarantined": {"x": 1}})
    msgs = [
        {"role": "user", "content": "Product: Tutu\n\nQuestion: How long?"},
        {"role": "assistant", "content": "12 in."},
    ]
    put("synthesis/dataset/dados-fine-tunning.jsonl", json.dumps({"uid": "0001", "messages": msgs}) + "\n")
    for kfp_task, task in (("finetune", "describer"), ("finetune-2", "qa")):
        put(
            f"{kfp_task}/model/finetune-summary.json",
            {"task": task, "base_model": "/m/smol", "backend": "hf", "steps": 20, "data": {"train_rows": 3}},
        )
        side = {"eval_loss": 2.0, "rouge_l": 0.1, "stop_rate": 0.5}
        put(
            f"{kfp_task}/model/eval.json",
            {"base": side, "finetuned": {**side, "eval_loss": 1.5}, "n_eval": 1, "samples": []},
        )
    for kfp_task, task in (("export", "describer"), ("export-2", "qa")):
        reg = {"model_name": f"prodtune-{task}", "version": "3", "aliases": ["candidate"], "manifest": {}}
        put(
            f"{kfp_task}/exported/export-summary.json",
            {
                "task": task,
                "serve_level": "Q4_K_M",
                "eval_gate": {"passed": False, "improvement": -0.1},
                "registry": reg,
            },
        )
    return run


def test_snapshot_of_a_run_feeds_the_documents(tmp_path: Path) -> None:
    root = _copy_inputs(tmp_path / "repo")
    run = _fake_run(tmp_path / "local_outputs" / "prodtune-2026-12-01-000000")
    docs.snapshot_run(tmp_path / "local_outputs", root)  # finds the newest run under the pipeline root
    assert docs.stale(root)  # new numbers
    docs.write_all(root)
    dataset = (root / "docs/dataset.md").read_text()
    assert "| dropped: `short_content` | 4 | 40.0% |" in dataset and "How long?" in dataset
    finetuning = (root / "docs/finetuning.md").read_text()
    assert "| eval_loss (lower is better) | 2.000 | 1.500 | -0.500 |" in finetuning
    assert "registered `prodtune-qa` v3 with aliases candidate" in finetuning
    assert docs.stale(root) == [] and run.is_dir()
