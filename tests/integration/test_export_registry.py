"""End to end: both tasks exported from SmolLM2-135M, uploaded to SeaweedFS, registered in MLflow.

Starts the embedded stack (SeaweedFS + MLflow) and runs two real exports (~4-6 min on 2 cores).
The stand-in "fine-tune" is the base model itself, so every paired difference in the promotion gate
is exactly 0 and neither export may become champion, even at margin 0 (candidate only). The champion
paths (worse than the champion: stays; better: it moves) are in test_promotion_gate.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from components.common.errors import InputError
from components.common.storage import S3Store, sha256_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def helpers():
    # The slow unit test module holds the model/fixture helpers; load it by path (tests/ is no package).
    path = Path(__file__).resolve().parents[1] / "unit" / "test_export_gguf.py"
    spec = importlib.util.spec_from_file_location("_export_gguf_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(helpers, root: Path, task: str, margin: float) -> dict:
    from components.export.core import FidelityConfig, run_export
    from components.export.fidelity import default_golden
    from components.export.gate import GateConfig

    pytest.importorskip("llama_cpp")
    model_dir = helpers.make_model_dir(root, task, helpers.smollm2_hf_dir())
    # Fewer golden conversations and tokens than the shipped config: the gate itself is covered by
    # the slow unit tests; here the point is the registry.
    golden = root / f"golden-{task}.jsonl"
    convs = default_golden(task)
    golden.write_text("".join(json.dumps({"messages": c}) + "\n" for c in (convs[0], convs[-1])))
    cfg = helpers.test_config(
        helpers.TEST_CACHE / "llama.cpp-0.3.36",
        publish=True,
        gate=GateConfig(margin=margin, min_examples=1, max_new_tokens=16, bootstrap_samples=200),
        fidelity=FidelityConfig(n_tokens=8, golden_path=golden),
    )
    return run_export(model_dir, root / f"out-{task}", cfg)


def test_export_registers_both_models_with_verified_s3_files(helpers, stack_env, tmp_path: Path) -> None:
    import typer
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from components.export import registry
    from pipelines.commands.export import register

    # The embedded stack is shared by the session: a champion another test registered (test_promotion_gate
    # when it runs first) would be the reference instead of the base.
    client = MlflowClient()
    for name in ("prodtune-describer", "prodtune-qa"):
        if client.search_registered_models(filter_string=f"name = '{name}'"):
            client.delete_registered_model(name)

    describer = _export(helpers, tmp_path, "describer", margin=0.0)
    qa = _export(helpers, tmp_path, "qa", margin=0.5)

    assert describer["eval_gate"]["passed"] is False and describer["eval_gate"]["against"] == "base"
    assert describer["registry"]["aliases"] == ["candidate"]
    assert qa["eval_gate"]["passed"] is False
    assert qa["registry"]["aliases"] == ["candidate"]

    rows = {(r["model"], r["version"]): r for r in registry.list_models()}
    d_row = rows[("prodtune-describer", describer["registry"]["version"])]
    q_row = rows[("prodtune-qa", qa["registry"]["version"])]
    assert d_row["aliases"] == ["candidate"] and d_row["gate_passed"] == "false"
    assert q_row["aliases"] == ["candidate"] and q_row["gate_passed"] == "false"

    # Every uploaded file verifies; the served GGUF downloads and hashes to the registry's sha256.
    store = S3Store.from_settings()
    manifest = qa["registry"]["manifest"]
    assert {
        "prodtune-qa-F16.gguf",
        "prodtune-qa-Q4_K_M.gguf",
        "prodtune-qa-Q8_0.gguf",
        "Modelfile",
        "export-summary.json",
        "adapter/adapter_config.json",
    } <= set(manifest)
    assert all(store.verify(entry["uri"]) for entry in manifest.values())
    served = registry.resolve("qa", "candidate")
    assert served["gguf_uri"] == q_row["gguf_uri"] and served["manifest"] == manifest
    local = store.download_file(served["gguf_uri"], tmp_path / "dl" / "served.gguf", verify=True)
    assert sha256_file(local) == served["gguf_sha256"] == manifest["prodtune-qa-Q4_K_M.gguf"]["sha256"]

    # champion refuses the gate-failed QA version unless forced.
    with pytest.raises(InputError, match="did not pass the eval gate"):
        registry.promote("qa", qa["registry"]["version"])
    moved = registry.promote("qa", qa["registry"]["version"], force=True)
    assert moved["previous"] is None
    assert registry.resolve("qa", "champion")["version"] == qa["registry"]["version"]

    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["models", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)
    assert {r["model"] for r in listed} >= {"prodtune-describer", "prodtune-qa"}
    qa_listed = next(
        r for r in listed if r["model"] == "prodtune-qa" and r["version"] == qa["registry"]["version"]
    )
    assert qa_listed["aliases"] == ["candidate", "champion"]
