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
    for rel in ("docs", "pipelines/configs", "components/synthesis/prompts", "benchmarks/finetune_gpu"):
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
