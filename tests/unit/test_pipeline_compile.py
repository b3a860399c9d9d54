"""The pipeline compiles to a KFP v2 package that a real cluster schedules where it should.

GPU placement is checked by evaluating the compiled node affinity the way KFP's driver turns it
into a pod (backend/src/v2/driver/k8s.go: each kfp-kubernetes affinity term becomes one
NodeSelectorTerm) and the way the Kubernetes scheduler reads it (terms ORed, expressions ANDed,
Gt/Lt on integers), against the label sets GPU Feature Discovery puts on real nodes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.common.config import CONFIG_DIR
from pipelines.compile import compile_pipeline
from pipelines.pipeline import config_path, load_step_configs
from pipelines.platform import GPU_TASKS, TASKS, load_platform

ROOT = Path(__file__).resolve().parents[2]

# GPU Feature Discovery labels (nvidia.com/gpu.memory in MiB, as NVML reports the card's total).
T4 = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.memory": "15360",
    "nvidia.com/gpu.product": "Tesla-T4",
}
V100_16GB = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.memory": "16384",
    "nvidia.com/gpu.product": "Tesla-V100-SXM2-16GB",
}
A100_40GB = {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.memory": "40960"}
CARD_12GB = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.memory": "12288",
    "nvidia.com/gpu.product": "TITAN-X",
}
CPU_NODE = {"kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m5.2xlarge"}
# Labels left from a removed GPU: memory still there, present=false.
GPU_GONE = {"nvidia.com/gpu.present": "false", "nvidia.com/gpu.memory": "16384"}


def _docs(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def requirement_matches(req: dict[str, Any], labels: dict[str, str]) -> bool:
    """One NodeSelectorRequirement, as the Kubernetes scheduler evaluates it."""
    key, op, values = req["key"], req["operator"], req.get("values", [])
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        assert len(values) == 1, f"{op} takes exactly one value: {req}"
        if not present:
            return False
        try:
            node, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False  # a non-integer label never matches Gt/Lt
        return node > bound if op == "Gt" else node < bound
    raise AssertionError(f"unknown operator {op}")


def schedulable(affinity_terms: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """Required node affinity as KFP compiles it: terms without weight are required and ORed;
    a term's matchExpressions are ANDed; an empty term matches nothing."""
    required = [t for t in affinity_terms if "weight" not in t]
    if not required:
        return True

    def term_matches(term: dict[str, Any]) -> bool:
        exprs = term.get("matchExpressions", [])
        return bool(exprs) and all(requirement_matches(e, labels) for e in exprs)

    return any(term_matches(t) for t in required)


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
            return True
    return False


def test_matcher_follows_kubernetes_semantics() -> None:
    # Guards the matcher itself: Gt is strict and numeric, terms OR, expressions AND.
    gt = {"key": "m", "operator": "Gt", "values": ["15000"]}
    assert requirement_matches(gt, {"m": "15001"}) and not requirement_matches(gt, {"m": "15000"})
    assert not requirement_matches(gt, {"m": "9e9"}) and not requirement_matches(gt, {})
    a = {"key": "a", "operator": "In", "values": ["1"]}
    assert not schedulable([{"matchExpressions": [a, gt]}], {"a": "1", "m": "1"})
    assert schedulable([{"matchExpressions": [a]}, {"matchExpressions": [gt]}], {"a": "0", "m": "20000"})
    assert not schedulable([{}], {"a": "1"})


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    out = compile_pipeline(tmp_path_factory.mktemp("c") / "p.yaml", profile="production")
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    return out, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def task_spec(spec: dict[str, Any], task: str) -> dict[str, Any]:
    """A DAG task by its display name (the DAG's own keys are export, export-2, ...)."""
    (found,) = [t for t in spec["root"]["dag"]["tasks"].values() if t["taskInfo"]["name"] == task]
    return found


def executor_of(spec: dict[str, Any], task: str) -> str:
    return task_spec(spec, task)["componentRef"]["name"].replace("comp-", "exec-")


def test_compile_writes_pipeline_with_config_defaults(compiled) -> None:
    _, spec, _ = compiled
    assert spec["pipelineInfo"]["name"] == "prodtune"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "input_uri" in params
    sampling = json.loads(params["sampling_config"]["defaultValue"])
    assert sampling == json.loads(load_step_configs("production")["sampling"])
    assert sorted(t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()) == sorted(TASKS)
    for executor in spec["deploymentSpec"]["executors"].values():
        # Heavy deps are baked into the image: components never pip-install at run time.
        assert "pip install" not in " ".join(executor["container"]["command"])


def test_gpu_tasks_land_on_16gb_gpus_only(compiled) -> None:
    _, spec, k8s = compiled
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    for task in GPU_TASKS:
        name = executor_of(spec, task)
        resources = spec["deploymentSpec"]["executors"][name]["container"]["resources"]
        acc = resources["accelerator"]
        assert acc.get("resourceCount", acc.get("count")) == "1"
        assert acc.get("resourceType", acc.get("type")) == "nvidia.com/gpu"
        affinity = k8s[name]["nodeAffinity"]
        for node in (T4, V100_16GB, A100_40GB):
            assert schedulable(affinity, node), (task, node)
        for node in (CARD_12GB, CPU_NODE, GPU_GONE):
            assert not schedulable(affinity, node), (task, node)
        assert tolerates(k8s[name]["tolerations"], taint)
        assert "nodeSelector" not in k8s[name]  # the old hand-applied memory-class label is gone
    # Only the fine-tunes ask for a GPU or tolerate the GPU taint.
    for task in set(TASKS) - set(GPU_TASKS):
        name = executor_of(spec, task)
        assert "accelerator" not in spec["deploymentSpec"]["executors"][name]["container"].get(
            "resources", {}
        )
        assert not tolerates(k8s[name].get("tolerations", []), taint), task


def test_gpu_threshold_is_configurable(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIG_DIR / "kubernetes.yaml").read_text())
    data["gpu"]["memory_mib_greater_than"] = 16000  # a 16 GB-only pool: T4 out, V100 in
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(data))
    out = compile_pipeline(tmp_path / "p.yaml", platform_path=path)
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    affinity = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        executor_of(spec, "finetune-describer")
    ]["nodeAffinity"]
    assert schedulable(affinity, V100_16GB) and not schedulable(affinity, T4)


def test_every_task_runs_non_root_with_sized_resources_retries_and_timeouts(compiled) -> None:
    _, spec, k8s = compiled
    platform = load_platform()
    for task in TASKS:
        name = executor_of(spec, task)
        sc = k8s[name]["securityContext"]
        assert sc["runAsNonRoot"] is True and int(sc["runAsUser"]) == 10001 and int(sc["runAsGroup"]) == 10001
        want = platform.steps[task]
        res = spec["deploymentSpec"]["executors"][name]["container"]["resources"]
        assert res["cpuRequest"] == float(want.cpu_request) and res["cpuLimit"] == float(want.cpu_limit)
        assert res["resourceMemoryRequest"] == want.host_memory_request
        assert res["resourceMemoryLimit"] == want.host_memory_limit
        (scratch,) = k8s[name]["genericEphemeralVolume"]
        assert scratch["mountPath"] == "/scratch" and scratch["size"] == want.scratch_disk
        env = {e["name"]: e["value"] for e in spec["deploymentSpec"]["executors"][name]["container"]["env"]}
        assert env["TMPDIR"] == "/scratch"
        assert int(k8s[name]["activeDeadlineSeconds"]) == want.timeout_seconds
        retry = task_spec(spec, task).get("retryPolicy", {})
        assert retry.get("maxRetryCount", 0) == want.retries
        if want.retries:
            assert retry["backoffDuration"] == "60s" and retry["backoffFactor"] == 2.0
        caching = task_spec(spec, task)["cachingOptions"].get("enableCache", False)
        assert caching is want.caching, task
    # The 7B describer's export holds the bf16 merge (15.2 GB) in RAM and four model files on disk.
    export = platform.steps["export-describer"]
    assert _gib(export.host_memory_request) >= 15.2 / 1.074 + 8
    assert _gib(export.scratch_disk) >= (15.2 + 15.2 + 15 + 8 + 4.7) / 1.074
    assert not platform.steps["prep"].caching and not export.caching


def _gib(quantity: str) -> float:
    assert quantity.endswith("Gi"), quantity
    return float(quantity[:-2])


def test_secrets_configmap_and_run_id_reach_the_steps_by_reference(compiled) -> None:
    _, spec, k8s = compiled
    for task in TASKS:
        cfg = k8s[executor_of(spec, task)]
        s3 = next(s for s in cfg["secretAsEnv"] if s["secretName"] == "prodtune-s3")
        assert s3.get("optional") is True  # IRSA: no Secret, the pod's role
        assert {m["envVar"] for m in s3["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        (cm,) = cfg["configMapAsEnv"]
        assert cm["configMapName"] == "prodtune-config"
        assert {m["envVar"] for m in cm["keyToEnv"]} >= {"MLFLOW_TRACKING_URI", "PRODTUNE_S3_ENDPOINT_URL"}
        (run_id,) = cfg["fieldPathAsEnv"]
        assert run_id == {"name": "PRODTUNE_PIPELINE_RUN", "fieldPath": "metadata.labels['pipeline/runid']"}
        assert cfg["podMetadata"]["labels"]["prodtune.io/mlflow-client"] == "true"
        teacher = [s for s in cfg["secretAsEnv"] if s["secretName"] == "prodtune-teacher"]
        assert bool(teacher) == (task == "synthesis"), task
        if teacher:
            assert not teacher[0].get("optional")


def test_no_secret_value_in_the_package(tmp_path: Path, monkeypatch) -> None:
    for var in (
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "KFP_TOKEN",
        "PRODTUNE_API_KEY",
    ):
        monkeypatch.setenv(var, f"sentinel-{var.lower()}-never-compiled")
    text = compile_pipeline(tmp_path / "p.yaml").read_text()
    assert "sentinel-" not in text and "secretValue" not in text


def test_no_compiling_machine_path_in_the_package(tmp_path: Path) -> None:
    text = compile_pipeline(tmp_path / "p.yaml").read_text()
    for local in {str(ROOT), str(Path.home()), os.getcwd(), str(tmp_path)}:
        assert local not in text, f"compiling machine path {local} in the package"


def test_pipeline_root_is_configurable(tmp_path: Path) -> None:
    out = compile_pipeline(tmp_path / "p.yaml", pipeline_root="s3://prodtune/kfp-root")
    assert (
        yaml.safe_load(out.read_text().split("\n---")[0])["defaultPipelineRoot"] == "s3://prodtune/kfp-root"
    )


def test_profile_overrides_fall_back_to_base() -> None:
    assert config_path("sampling", "no-such-profile") == CONFIG_DIR / "sampling.yaml"


def test_platform_settings_reject_typos_and_missing_steps(tmp_path: Path) -> None:
    from components.common.errors import InputError

    data = yaml.safe_load((CONFIG_DIR / "kubernetes.yaml").read_text())
    data["steps"]["prep"]["host_memory_requets"] = "4Gi"
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="host_memory_requets"):
        load_platform(path)
    del data["steps"]["prep"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="missing \\['prep'\\]"):
        load_platform(path)


def test_finetune_checkpoints_go_to_s3_per_pipeline_run(tmp_path: Path) -> None:
    out = compile_pipeline(tmp_path / "p.yaml", checkpoint_root="s3://bucket/ckpt")
    spec = next(yaml.safe_load_all(out.read_text()))
    assert (
        spec["root"]["inputDefinitions"]["parameters"]["checkpoint_root"]["defaultValue"]
        == "s3://bucket/ckpt"
    )
    for name in GPU_TASKS:
        inputs = task_spec(spec, name)["inputs"]["parameters"]
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
    from pipelines.pipeline import BASE_CACHE_MOUNT
    from pipelines.platform import load_platform

    platform_settings = load_platform().model_copy(update={"base_cache_pvc": "base-cache"})
    out = compile_pipeline(tmp_path / "p.yaml", platform=platform_settings)
    spec, platform = _docs(out)[0], _docs(out)[1]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in [n for n in k8s if "finetune" in n or "export" in n]:
        hf = [s for s in k8s[name]["secretAsEnv"] if s["secretName"] == "prodtune-hf"]
        assert hf and hf[0]["optional"] is True and hf[0]["keyToEnv"][0]["envVar"] == "HF_TOKEN"
        assert k8s[name]["pvcMount"][0]["mountPath"] == BASE_CACHE_MOUNT
        env = spec["deploymentSpec"]["executors"][name]["container"].get("env", [])
        assert {"name": "PRODTUNE_BASE_CACHE", "value": BASE_CACHE_MOUNT} in env
    assert not any("prodtune-hf" in json.dumps(v) for n, v in k8s.items() if "prep" in n)


def test_compile_cli_takes_platform_and_pipeline_root(tmp_path: Path) -> None:
    from pipelines.cli import main

    data = yaml.safe_load((CONFIG_DIR / "kubernetes.yaml").read_text())
    data["steps"]["prep"]["retries"] = 5
    platform = tmp_path / "k.yaml"
    platform.write_text(yaml.safe_dump(data))
    out = tmp_path / "p.yaml"
    with pytest.raises(SystemExit) as done:
        main(["compile", "--output", str(out), "--platform", str(platform), "--pipeline-root", "s3://b/root"])
    assert done.value.code in (0, None)
    spec = next(yaml.safe_load_all(out.read_text()))
    assert spec["defaultPipelineRoot"] == "s3://b/root"
    assert task_spec(spec, "prep")["retryPolicy"]["maxRetryCount"] == 5
