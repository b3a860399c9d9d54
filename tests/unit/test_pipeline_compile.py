"""The pipeline compiles to a KFP v2 package with the production configs as parameter defaults."""

from __future__ import annotations

import json

import yaml

from components.common.config import CONFIG_DIR
from pipelines.compile import compile_pipeline
from pipelines.pipeline import config_path, load_step_configs


def _docs(path):
    return list(yaml.safe_load_all(path.read_text()))


def test_compile_writes_pipeline_with_config_defaults(tmp_path):
    out = compile_pipeline(tmp_path / "p.yaml", profile="production")
    spec = _docs(out)[0]
    assert spec["pipelineInfo"]["name"] == "prodtune"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "input_uri" in params
    sampling = json.loads(params["sampling_config"]["defaultValue"])
    assert sampling == json.loads(load_step_configs("production")["sampling"])
    executors = spec["deploymentSpec"]["executors"]
    assert any("prep" in name for name in executors) and any("sampling" in name for name in executors)
    # Heavy deps are baked into the image: components never pip-install at run time.
    for executor in executors.values():
        assert "pip install" not in " ".join(executor["container"]["command"])


def test_compiled_tasks_get_s3_credentials_from_a_secret(tmp_path):
    out = compile_pipeline(tmp_path / "p.yaml")
    _, *platform = _docs(out)
    text = json.dumps(platform)
    assert "prodtune-s3" in text and "AWS_SECRET_ACCESS_KEY" in text
    # Secrets are referenced by name only: no credential value can be in the package.
    assert "secretValue" not in text


def test_profile_overrides_fall_back_to_base(tmp_path):
    assert config_path("sampling", "no-such-profile") == CONFIG_DIR / "sampling.yaml"
