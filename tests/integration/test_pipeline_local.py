"""The whole pipeline through `kfp.local.SubprocessRunner` against a real embedded SeaweedFS + MLflow.

prep -> sampling -> synthesis -> fine-tune (describer, qa) -> export/registry, with the real CPU
training and GGUF export on SmolLM2-135M. The teacher is the OpenAI-compatible test server (real
HTTP, grounded answers, no faults) so the run is deterministic; the llama.cpp teacher has its own
test. What the run must produce is checked in pipeline_checks.py (shared with the DockerRunner test).
"""

from __future__ import annotations

import pytest

from components.prep.sample_data import generate_trn
from tests.fakes.openai_fault_server import FaultServer
from tests.integration.pipeline_checks import INPUT_LINES, SMALL, check_pipeline_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_whole_pipeline_runs_locally_and_registers_both_models(tmp_path, embedded_stack, monkeypatch):
    from pipelines.local_run import run_local

    trn = tmp_path / "trn.json.gz"
    generate_trn(trn, lines=INPUT_LINES, seed=1)
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
    check_pipeline_run(result, env, requested, tmp_path)
