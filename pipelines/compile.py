"""Compile the pipeline for KFP on Kubernetes and submit runs to a KFP endpoint."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipelines.pipeline import PlatformSettings, build_pipeline, load_step_configs


def compile_pipeline(
    output: str | Path,
    *,
    profile: str | None = "production",
    platform: PlatformSettings | None = None,
    checkpoint_root: str = "s3://prodtune/checkpoints",
) -> Path:
    """Write the pipeline package; step configs of `profile` become the parameter defaults."""
    from kfp import compiler

    configs = load_step_configs(profile)
    pipeline = build_pipeline(platform or PlatformSettings())
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline,
        str(output),
        pipeline_parameters={
            **{f"{step}_config": cfg for step, cfg in configs.items()},
            # Fine-tune checkpoints are mirrored here, so a rescheduled GPU pod resumes.
            "checkpoint_root": checkpoint_root,
        },
    )
    return output


def submit_run(
    host: str,
    input_uri: str,
    *,
    experiment: str = "prodtune",
    profile: str | None = "production",
    package: str | Path | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> str:
    """Create a run on a KFP endpoint from a compiled package; returns the run id."""
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        if package is None:
            package = compile_pipeline(Path(tmp) / "prodtune-pipeline.yaml", profile=profile)
        # The token (if the endpoint needs one) comes from the environment, never from a flag.
        client = kfp.Client(
            host=host, existing_token=os.environ.get("KFP_TOKEN"), namespace=namespace or "kubeflow"
        )
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments={"input_uri": input_uri},
            experiment_name=experiment,
            run_name=run_name,
            namespace=namespace,
            service_account=service_account,
        )
    return result.run_id
