"""The pipeline compiles to a KFP v2 package with the production configs as parameter defaults."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_finetune_tasks_get_one_gpu_and_a_16gb_node_selector(tmp_path):
    out = compile_pipeline(tmp_path / "p.yaml")
    spec, platform = _docs(out)[0], _docs(out)[1]
    tasks = spec["root"]["dag"]["tasks"]
    finetunes = [name for name in tasks if name.startswith("finetune")]
    assert len(finetunes) == 2, tasks.keys()  # describer and qa: one component, two configs
    executors = spec["deploymentSpec"]["executors"]
    for name in finetunes:
        executor = executors[tasks[name]["componentRef"]["name"].replace("comp-", "exec-")]
        resources = executor["container"]["resources"]
        assert resources["accelerator"]["resourceCount"] == "1"
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
            tasks[name]["componentRef"]["name"].replace("comp-", "exec-")
        ]
        assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.memory-class": "16gb"}
        assert any(t["key"] == "nvidia.com/gpu" for t in k8s["tolerations"])
    # Only the fine-tunes ask for a GPU.
    gpu_execs = [n for n, e in executors.items() if "accelerator" in e["container"].get("resources", {})]
    assert len(gpu_execs) == len({tasks[n]["componentRef"]["name"] for n in finetunes})


def test_synthesis_gets_the_teacher_key_from_a_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel-never-compiled")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-sentinel-never-compiled")
    out = compile_pipeline(tmp_path / "p.yaml")
    spec, platform = _docs(out)[0], _docs(out)[1]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    synth = next(v for k, v in k8s.items() if "synthesis" in k)
    secrets = {s["secretName"]: s for s in synth["secretAsEnv"]}
    assert "OPENAI_API_KEY" in json.dumps(secrets["prodtune-teacher"])
    text = out.read_text()
    assert "sentinel-never-compiled" not in text
    # The config names the variable that holds the key, never the key.
    assert (
        json.loads(spec["root"]["inputDefinitions"]["parameters"]["synthesis_config"]["defaultValue"])[
            "api_key_env"
        ]
        == "OPENAI_API_KEY"
    )


def test_finetune_checkpoints_go_to_s3_per_pipeline_run(tmp_path):
    out = compile_pipeline(tmp_path / "p.yaml", checkpoint_root="s3://bucket/ckpt")
    spec = _docs(out)[0]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["checkpoint_root"]["defaultValue"] == "s3://bucket/ckpt"
    tasks = spec["root"]["dag"]["tasks"]
    for name in (n for n in tasks if n.startswith("finetune")):
        inputs = tasks[name]["inputs"]["parameters"]
        assert inputs["checkpoint_uri"]["componentInputParameter"] == "checkpoint_root"
        assert inputs["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


SENTINELS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-sentinel-4711",
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL4711",
    "OPENAI_API_KEY": "sk-openai-sentinel-4711",
    "HF_TOKEN": "hf_token_sentinel_4711",
    "KFP_TOKEN": "kfp-token-sentinel-4711",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-pw-sentinel-4711",
    "PRODTUNE_MODELS_DIR": "/compile-host/models-sentinel-4711",
    "PRODTUNE_CACHE": "/compile-host/cache-sentinel-4711",
    "PRODTUNE_HOME": "/compile-host/home-sentinel-4711",
    "PRODTUNE_DESCRIBER_BASE": "/compile-host/qwen-sentinel-4711",
}


def test_compiled_package_holds_nothing_of_the_compiling_machine(tmp_path, monkeypatch):
    import os

    from components.finetune.core import FinetuneConfig

    home = tmp_path / "throwaway-home-4711"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    for profile in ("production", "local"):
        text = compile_pipeline(tmp_path / f"{profile}.yaml", profile=profile).read_text()
        for name, value in SENTINELS.items():
            assert value not in text, f"{name}'s value reached the {profile} package"
        assert str(home) not in text and str(Path.home()) not in text
        assert os.getcwd() not in text  # no path of the compiling machine at all
        assert "sentinel" not in text and "/root/" not in text

    # The configs travel unexpanded; the component expands them in its pod, with the pod's env.
    spec = _docs(tmp_path / "production.yaml")[0]
    raw = spec["root"]["inputDefinitions"]["parameters"]["describer_config"]["defaultValue"]
    assert "${PRODTUNE_DESCRIBER_BASE:-unsloth/Qwen2.5-7B-Instruct-bnb-4bit}" in raw
    monkeypatch.delenv("PRODTUNE_DESCRIBER_BASE")
    in_pod = FinetuneConfig.model_validate_json(raw)
    assert in_pod.base_model == "unsloth/Qwen2.5-7B-Instruct-bnb-4bit"
    monkeypatch.setenv("PRODTUNE_DESCRIBER_BASE", "s3://weights/qwen/")
    assert FinetuneConfig.model_validate_json(raw).base_model == "s3://weights/qwen/"
    local = _docs(tmp_path / "local.yaml")[0]["root"]["inputDefinitions"]["parameters"]
    assert "${PRODTUNE_MODELS_DIR:-~/.cache/prodtune/models}" in local["describer_config"]["defaultValue"]


def test_a_bad_config_still_fails_at_compile_time(tmp_path, monkeypatch):
    from components.common.errors import InputError
    from pipelines import pipeline

    bad = tmp_path / "configs"
    bad.mkdir()
    (bad / "sampling.yaml").write_text("n: -3\n")
    monkeypatch.setattr(
        pipeline,
        "config_path",
        lambda step, profile=None: (
            bad / "sampling.yaml" if step == "sampling" else CONFIG_DIR / f"{step}.yaml"
        ),
    )
    import pytest

    with pytest.raises(InputError) as err:
        load_step_configs("production")
    assert err.value.field == "n" and "sampling.yaml" in str(err.value)


def test_finetune_and_export_get_hf_token_and_base_cache(tmp_path):
    from pipelines.pipeline import BASE_CACHE_MOUNT, PlatformSettings

    out = compile_pipeline(tmp_path / "p.yaml", platform=PlatformSettings(base_cache_pvc="base-cache"))
    spec, platform = _docs(out)[0], _docs(out)[1]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in [n for n in k8s if "finetune" in n or "export" in n]:
        hf = [s for s in k8s[name]["secretAsEnv"] if s["secretName"] == "prodtune-hf"]
        assert hf and hf[0]["optional"] is True and hf[0]["keyToEnv"][0]["envVar"] == "HF_TOKEN"
        assert k8s[name]["pvcMount"][0]["mountPath"] == BASE_CACHE_MOUNT
        env = spec["deploymentSpec"]["executors"][name]["container"].get("env", [])
        assert {"name": "PRODTUNE_BASE_CACHE", "value": BASE_CACHE_MOUNT} in env
    assert not any("prodtune-hf" in json.dumps(v) for n, v in k8s.items() if "prep" in n)
