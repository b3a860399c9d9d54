"""The pipeline through `kfp.local.SubprocessRunner` against a real embedded SeaweedFS + MLflow.

Artifacts are read back from S3 *through MLflow* (proxied artifacts): the client has no S3 keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from components.prep.sample_data import generate_trn

pytestmark = pytest.mark.integration


def test_pipeline_runs_locally_and_logs_to_mlflow(tmp_path, embedded_stack, stack_env, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipelines.local_run import run_local

    trn = tmp_path / "trn.json.gz"
    generate_trn(trn, lines=400, seed=1)
    env = embedded_stack.env()
    result = run_local(
        str(trn),
        tmp_path / "root",
        profile="local",
        overrides={"sampling": {"n": 25, "seed": 3}},
        env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]},  # steps need no S3 keys
    )

    (sample_dir,) = result.outputs.values()
    sample = pd.read_csv(sample_dir / "data-25.csv", dtype=str, keep_default_na=False)
    assert len(sample) == 25 and set(sample["split"]) == {"train", "eval"}

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("prodtune")
    runs = client.search_runs([experiment.experiment_id], f"tags.`prodtune.pipeline_run` = '{result.run_id}'")
    by_step = {r.data.tags["prodtune.step"]: r for r in runs}
    assert {"prep", "sampling"} <= set(by_step)
    assert by_step["sampling"].data.metrics["sampled"] == 25
    prep_metrics = by_step["prep"].data.metrics
    assert prep_metrics["lines_read"] == 400

    # Read the step's summary back through the tracking server (artifacts live on SeaweedFS).
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    local = mlflow.artifacts.download_artifacts(
        run_id=by_step["sampling"].info.run_id,
        artifact_path="sampling-summary.json",
        dst_path=str(tmp_path / "dl"),
    )
    summary = json.loads(Path(local).read_text())
    assert summary["sampled"] == 25 and summary["population"] == prep_metrics["kept"]
    assert summary == json.loads((sample_dir / "sampling-summary.json").read_text())

    # ...and the object really is in the S3 bucket behind MLflow.
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["PRODTUNE_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env["PRODTUNE_S3_BUCKET"])
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith(f"{by_step['sampling'].info.run_id}/artifacts/sampling-summary.json") for k in keys)
