"""Compile the pipeline for KFP on Kubernetes (submission: pipelines/submit.py)."""

from __future__ import annotations

from pathlib import Path

from pipelines.pipeline import PlatformSettings, build_pipeline, load_platform, load_step_configs


def compile_pipeline(
    output: str | Path,
    *,
    profile: str | None = "production",
    platform: PlatformSettings | None = None,
    platform_path: str | Path | None = None,
    checkpoint_root: str = "s3://prodtune/checkpoints",
    pipeline_root: str | None = None,
) -> Path:
    """Write the pipeline package; step configs of `profile` become the parameter defaults.

    Kubernetes settings come from `platform`, else from `platform_path`
    (default pipelines/configs/kubernetes.yaml).
    """
    from kfp import compiler

    configs = load_step_configs(profile)
    pipeline = build_pipeline(platform or load_platform(platform_path), pipeline_root=pipeline_root)
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
