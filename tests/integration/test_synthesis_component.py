"""The KFP component runs through the local runner (as in the demo) against the fault server."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.fakes import FaultServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_component_runs_in_kfp_local_runner(tmp_path, monkeypatch):
    from kfp import dsl, local

    from components.index.component import index
    from components.synthesis.component import synthesis

    sample = tmp_path / "sample"
    sample.mkdir()
    rows = [
        ["0007", "Steel water bottle", "Double wall steel bottle. Holds 750 ml of water.", "train"],
        ["0008", "Cotton tote bag", "Large cotton tote bag with two handles. Machine washable.", "eval"],
    ]
    frame = pd.DataFrame(rows, columns=["uid", "title", "content", "split"])
    frame.to_csv(sample / "data-2.csv", index=False)
    processed = tmp_path / "processed"  # the catalogue the index step embeds, as prep writes it
    processed.mkdir()
    frame.drop(columns="split").to_parquet(processed / "trn-processed.parquet", index=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with FaultServer(api_key="sk-kfp") as srv:
        # the key reaches the step only through the environment, never as a pipeline parameter
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-kfp")
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
        config = json.dumps({"model": "fault-model", "cache_dir": str(tmp_path / "cache")})

        @dsl.pipeline
        def demo() -> dsl.Dataset:
            imported = dsl.importer(artifact_uri=str(sample), artifact_class=dsl.Dataset)
            catalogue = dsl.importer(artifact_uri=str(processed), artifact_class=dsl.Dataset)
            store = index(processed=catalogue.output, config_json="{}").outputs["store"]
            return synthesis(sample=imported.output, index=store, config_json=config).outputs["dataset"]

        result = demo().output
    out = Path(result.path)
    summary = json.loads((out / "synthesis-summary.json").read_text())
    assert summary["products"] == 2 and summary["with_pairs"] == 2
    assert result.metadata["prompt_version"] == "qa-v1"
    uids = {json.loads(line)["uid"] for line in (out / "dados-fine-tunning.jsonl").read_text().splitlines()}
    assert uids == {"0007", "0008"}  # leading zeros survive the trip through the artifact
