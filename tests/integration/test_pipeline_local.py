"""The whole pipeline through `kfp.local.SubprocessRunner` against a real embedded SeaweedFS + MLflow.

prep -> sampling -> synthesis -> fine-tune (describer, qa) -> export/registry, with the real CPU
training and GGUF export on SmolLM2-135M. The teacher is the OpenAI-compatible test server (real
HTTP, grounded answers, no faults) so the run is deterministic; the llama.cpp teacher has its own
test. Artifacts are read back from S3 *through MLflow* (proxied artifacts): the reader has no S3 keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from components.prep.sample_data import generate_trn
from tests.fakes.openai_fault_server import FaultServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = {
    "sampling": {"n": 12, "seed": 3, "eval_fraction": 0.25},
    "synthesis": {"model": "fake-teacher", "concurrency": 4, "pairs_per_product": 2, "max_tokens": 200},
    "describer": {"max_steps": 3, "save_steps": 3, "eval": {"max_examples": 2, "max_new_tokens": 16}},
    "qa": {"max_steps": 3, "save_steps": 3, "eval": {"max_examples": 2, "max_new_tokens": 16}},
}


def _runs_by_step(client, run_id: str) -> dict[str, object]:
    experiment = client.get_experiment_by_name("prodtune")
    runs = client.search_runs([experiment.experiment_id], f"tags.`prodtune.pipeline_run` = '{run_id}'")
    return {r.data.tags["prodtune.step"]: r for r in runs}


def test_whole_pipeline_runs_locally_and_registers_both_models(tmp_path, embedded_stack, monkeypatch):
    import boto3
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipelines.local_run import run_local

    trn = tmp_path / "trn.json.gz"
    generate_trn(trn, lines=400, seed=1)
    env = embedded_stack.env()
    monkeypatch.setenv("PRODTUNE_HOME", str(tmp_path / "home"))
    with FaultServer() as teacher:
        result = run_local(
            str(trn),
            tmp_path / "root",
            profile="local",
            overrides=SMALL,
            env={**env, "OPENAI_BASE_URL": teacher.url, "OPENAI_API_KEY": "sk-test-not-a-secret"},
        )
        requested = teacher.uids()

    # sampling: the seeded sample with its split; synthesis asked the teacher about each product once
    sample = pd.read_csv(
        result.step_output("sampling", "sample") / "data-12.csv", dtype=str, keep_default_na=False
    )
    assert len(sample) == 12 and set(sample["split"]) == {"train", "eval"}
    assert sorted(requested) == sorted(sample["uid"])

    # both exports: GGUF files whose sha256 verifies after a download from S3
    assert set(result.outputs) == {"describer", "qa"}
    s3 = boto3.client(
        "s3",
        endpoint_url=env["PRODTUNE_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for task, exported in result.outputs.items():
        summary = json.loads((exported / "export-summary.json").read_text())
        assert summary["task"] == task
        version = client.get_model_version_by_alias(f"prodtune-{task}", "candidate")
        uri = version.tags["prodtune.gguf_uri"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        local = tmp_path / f"{task}.gguf"
        s3.download_file(bucket, key, str(local))
        from components.common.storage import sha256_file

        assert sha256_file(local) == version.tags["prodtune.gguf_sha256"]
        assert local.read_bytes()[:4] == b"GGUF"

    # every step logged to MLflow under this pipeline run
    by_step = _runs_by_step(client, result.run_id)
    assert {"prep", "sampling", "synthesis"} <= set(by_step)
    assert by_step["sampling"].data.metrics["sampled"] == 12
    assert by_step["prep"].data.metrics["lines_read"] == 400

    # ...and a step's artifact reads back through the tracking server, with no S3 keys here
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PRODTUNE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    local = mlflow.artifacts.download_artifacts(
        run_id=by_step["sampling"].info.run_id,
        artifact_path="sampling-summary.json",
        dst_path=str(tmp_path / "dl"),
    )
    summary = json.loads(Path(local).read_text())
    assert summary["sampled"] == 12 and summary["population"] == by_step["prep"].data.metrics["kept"]
