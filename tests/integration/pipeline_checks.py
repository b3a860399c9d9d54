"""What a whole-pipeline run must have produced, whichever kfp.local runner ran it.

Shared by test_pipeline_local.py (SubprocessRunner) and test_pipeline_docker.py (DockerRunner): the
seeded sample and its split, one teacher request per product, both GGUF exports verified by sha256
after a download from S3, every step logged to MLflow under the run, and a step's artifact read
back *through MLflow* (proxied artifacts) with no S3 keys on the reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

# The CPU recipes (pipelines/configs/local/), made smaller: 12 products, 3 training steps per model.
SMALL = {
    "sampling": {"n": 12, "seed": 3, "eval_fraction": 0.25},
    "synthesis": {"model": "fake-teacher", "concurrency": 4, "pairs_per_product": 2, "max_tokens": 200},
    "describer": {"max_steps": 3, "save_steps": 3, "eval": {"max_examples": 2, "max_new_tokens": 16}},
    "qa": {"max_steps": 3, "save_steps": 3, "eval": {"max_examples": 2, "max_new_tokens": 16}},
}
INPUT_LINES = 400


def runs_by_step(client, run_id: str) -> dict[str, object]:
    experiment = client.get_experiment_by_name("prodtune")
    runs = client.search_runs([experiment.experiment_id], f"tags.`prodtune.pipeline_run` = '{run_id}'")
    return {r.data.tags["prodtune.step"]: r for r in runs}


def check_pipeline_run(result, env: dict[str, str], requested: list[str], tmp_path: Path) -> None:
    import boto3
    import mlflow
    from mlflow.tracking import MlflowClient

    from components.common.storage import sha256_file

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
        assert sha256_file(local) == version.tags["prodtune.gguf_sha256"]
        assert local.read_bytes()[:4] == b"GGUF"

    # every step logged to MLflow under this pipeline run
    by_step = runs_by_step(client, result.run_id)
    assert {"prep", "sampling", "synthesis"} <= set(by_step)
    assert by_step["sampling"].data.metrics["sampled"] == 12
    assert by_step["prep"].data.metrics["lines_read"] == INPUT_LINES

    # ...and a step's artifact reads back through the tracking server, with no S3 keys here
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PRODTUNE_S3_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        local = mlflow.artifacts.download_artifacts(
            run_id=by_step["sampling"].info.run_id,
            artifact_path="sampling-summary.json",
            dst_path=str(tmp_path / "dl"),
        )
    summary = json.loads(Path(local).read_text())
    assert summary["sampled"] == 12 and summary["population"] == by_step["prep"].data.metrics["kept"]
