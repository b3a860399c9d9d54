"""Run the pipeline with `kfp.local`: the same components as on Kubernetes.

By default each component runs as a subprocess of this interpreter (`SubprocessRunner`) and inherits
its environment, so the embedded stack's `MLFLOW_TRACKING_URI` reaches every step exactly as a
Kubernetes env var would. With `docker=` each runs in its image (`DockerRunner`) with `env` as the
container's environment.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.pipeline import build_pipeline, load_step_configs
from pipelines.run_view import StepView, capture_tasks


class PipelineFailed(Exception):
    """A step failed; the view has already shown its last log lines."""

    def __init__(self, run_id: str, log_dir: Path, failed: list[str]) -> None:
        super().__init__(f"pipeline run {run_id} failed at {', '.join(failed) or 'a step'}; logs: {log_dir}")
        self.run_id, self.log_dir, self.failed = run_id, log_dir, failed


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    pipeline_root: Path
    outputs: dict[str, Path]
    log_dir: Path | None = None

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
    view: StepView | None = None,
    log_dir: Path | None = None,
    docker: dict[str, Any] | None = None,
) -> LocalRun:
    """Run the whole pipeline locally; returns where each pipeline output landed.

    With `view`, kfp.local's output goes to one log file per step under `log_dir` (default
    `<pipeline_root>/logs/<run id>/`) and `view` prints a line per step; without, it streams as is.
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
    logs = log_dir or root / "logs" / run_id
    capture = capture_tasks(logs, view) if view is not None else contextlib.nullcontext()
    with warnings.catch_warnings(), capture:
        # The local runner warns that our image names do not contain "python" (we run in this venv)
        # and that display names, resources and accelerators are no-ops locally: both are expected.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        try:
            task = pipeline(input_uri=input_uri, **{f"{step}_config": cfg for step, cfg in configs.items()})
        except RuntimeError as exc:
            if view is None or "finished with status" not in str(exc):
                raise
            raise PipelineFailed(run_id, logs, [s.name for s in view.steps if s.ok is False]) from None
    outputs = {name: Path(artifact.path) for name, artifact in task.outputs.items()}
    return LocalRun(run_id=run_id, pipeline_root=root, outputs=outputs, log_dir=logs)
