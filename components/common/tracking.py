"""MLflow tracking for pipeline steps, behind one small interface.

`step_run("prep", params)` opens an MLflow run when a tracking URI is configured and a no-op
tracker otherwise (unit tests, ad-hoc CLI use), so step code never branches on MLflow itself.
Artifacts go through the tracking server (proxied artifact storage): the step needs no S3 keys.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.settings import Settings, get_settings

# Tag names shared by every step, so runs of one pipeline execution can be found together.
TAG_STEP = "prodtune.step"
TAG_PIPELINE_RUN = "prodtune.pipeline_run"


@dataclass
class NullTracker:
    """Records what would have been logged; used when no tracking URI is set."""

    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.update({k: float(v) for k, v in metrics.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(str(path))

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.artifacts.append(artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.artifacts.append(artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass


class MlflowTracker(NullTracker):
    """Thin pass-through to the active MLflow run."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id=run_id)
        import mlflow

        self._mlflow = mlflow

    def log_params(self, params: Mapping[str, Any]) -> None:
        super().log_params(params)
        # MLflow params are strings of at most 6000 chars; long values belong in artifacts.
        self._mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        super().log_artifact(path, artifact_path)
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        super().log_dict(obj, artifact_file)
        self._mlflow.log_dict(obj, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        super().log_figure(figure, artifact_file)
        self._mlflow.log_figure(figure, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._mlflow.set_tags(dict(tags))


Tracker = NullTracker | MlflowTracker


@contextlib.contextmanager
def step_run(
    step: str,
    params: Mapping[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    run_name: str | None = None,
) -> Iterator[Tracker]:
    """Open a tracked run for one pipeline step (or a null tracker without a tracking URI)."""
    settings = settings or get_settings()
    if not settings.mlflow_tracking_uri:
        tracker = NullTracker()
        tracker.log_params(params or {})
        yield tracker
        return

    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow_experiment)
    tags = {TAG_STEP: step}
    pipeline_run = os.environ.get("PRODTUNE_PIPELINE_RUN")
    if pipeline_run:
        tags[TAG_PIPELINE_RUN] = pipeline_run
    with mlflow.start_run(run_name=run_name or step, tags=tags) as run:
        tracker = MlflowTracker(run.info.run_id)
        tracker.log_params(params or {})
        yield tracker
