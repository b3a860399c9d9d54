"""MLflow shows the prompt version, counts, tokens and cost of a synthesis run."""

from __future__ import annotations

import pandas as pd
import pytest

from components.synthesis.core import SynthesisConfig, run_synthesis
from tests.fakes import FaultServer

pytestmark = pytest.mark.integration


def test_run_is_tracked_with_prompt_version_counts_tokens_and_cost(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("synthesis-test", artifact_location=str(tmp_path / "artifacts"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PRODTUNE_MLFLOW_EXPERIMENT", "synthesis-test")

    rows = [
        ["a1", "Steel water bottle", "Double wall steel bottle. Holds 750 ml of water.", "train"],
        ["a2", "Cotton tote bag", "Large cotton tote bag with two handles. Machine washable.", "eval"],
        ["a3", "Empty", "", "train"],
    ]
    inp = tmp_path / "data-3.csv"
    pd.DataFrame(rows, columns=["uid", "title", "content", "split"]).to_csv(inp, index=False)
    with FaultServer(api_key="sk-t", per_uid={"a1": ["429"]}) as srv:
        cfg = SynthesisConfig(
            base_url=srv.url,
            model="gpt-4o-mini",
            cache_dir=tmp_path / "cache",
            base_delay_s=0.01,
            prices={"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}},
        )
        summary = run_synthesis(
            cfg, inp, tmp_path / "out", environ={"OPENAI_API_KEY": "sk-t"}, progress=False
        )

    (run,) = mlflow.search_runs(experiment_names=["synthesis-test"], output_format="list")
    params, metrics = run.data.params, run.data.metrics
    assert params["prompt_version"] == "qa-v1" and params["model"] == "gpt-4o-mini"
    assert run.data.tags["prodtune.step"] == "synthesis"
    assert "sk-t" not in str(params)
    assert metrics["products"] == 3 and metrics["with_pairs"] == 2 and metrics["quarantined_empty_input"] == 1
    assert metrics["requests"] == 3 and metrics["retries"] == 1
    assert metrics["tokens_in"] == summary["tokens"]["prompt"] > 0
    assert metrics["tokens_out"] == summary["tokens"]["completion"] > 0
    expected_cost = (summary["tokens"]["prompt"] * 0.15 + summary["tokens"]["completion"] * 0.6) / 1e6
    assert metrics["cost_usd"] == pytest.approx(expected_cost, rel=1e-3)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"synthesis-summary.json", "quarantine.jsonl", "prompt"} <= artifacts
