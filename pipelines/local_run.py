"""Run the pipeline with `kfp.local`: the same components as on Kubernetes.

By default each component runs as a subprocess of this interpreter (`SubprocessRunner`) and inherits
its environment, so the embedded stack's `MLFLOW_TRACKING_URI` reaches every step exactly as a
Kubernetes env var would. With `docker=` each runs in its image (`DockerRunner`) with `env` as the
container's environment.
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.pipeline import build_pipeline, load_step_configs


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    pipeline_root: Path
    outputs: dict[str, Path]

    def step_output(self, task: str, output: str) -> Path:
        """An intermediate artifact of this run (the local runner lays them out by task name)."""
        run_dir = next(iter(self.outputs.values())).parent.parent
        path = run_dir / task / output
        if not path.exists():
            raise FileNotFoundError(f"no output {output!r} of task {task!r} under {run_dir}")
        return path


def run_local(
    input_uri: str,
    pipeline_root: str | Path,
    *,
    profile: str | None = "local",
    overrides: dict[str, dict] | None = None,
    env: dict[str, str] | None = None,
    docker: dict[str, Any] | None = None,
) -> LocalRun:
    """Run the whole pipeline locally; returns where each pipeline output landed.

    `docker`: docker-py `containers.run` arguments (network_mode, user, read_only, tmpfs, mounts...)
    for `kfp.local.DockerRunner`; the steps then run in the images named by components.common.images.
    """
    from kfp import local

    run_id = uuid.uuid4().hex[:12]
    os.environ.update(env or {})
    # Tags every step's MLflow run, so one pipeline execution can be found as a group.
    os.environ["PRODTUNE_PIPELINE_RUN"] = run_id
    root = Path(pipeline_root).resolve()
    if docker is None:
        runner = local.SubprocessRunner(use_venv=False)
    else:  # a container inherits nothing: the run id travels with the rest of its environment
        environment = {**(env or {}), "PRODTUNE_PIPELINE_RUN": run_id, **docker.get("environment", {})}
        runner = local.DockerRunner(**{**docker, "environment": environment})
    local.init(runner=runner, pipeline_root=str(root))

    configs = load_step_configs(profile, overrides)
    pipeline = build_pipeline(platform=None)
    with warnings.catch_warnings():
        # The local runner warns that our image names do not contain "python"; we run in-process venv.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        task = pipeline(input_uri=input_uri, **{f"{step}_config": cfg for step, cfg in configs.items()})
    outputs = {name: Path(artifact.path) for name, artifact in task.outputs.items()}
    return LocalRun(run_id=run_id, pipeline_root=root, outputs=outputs)
