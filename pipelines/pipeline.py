"""The prodtune KFP v2 pipeline: the same components run on Kubernetes and in `kfp.local`.

Step configs are passed as JSON strings (validated again inside each component), so a submitted run
records exactly the config it ran with. Kubernetes-only settings (GPU node affinity, resources,
Secrets, retries, timeouts, security context; `pipelines/configs/kubernetes.yaml`) are applied by
`apply_platform()` at compile time: the local runner has none of them, and keeping the pipeline's
logic in the components means it does not need them.

No `from __future__ import annotations` here: KFP reads the pipeline's annotations as real types.
"""

from pathlib import Path
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model

from components.common.config import CONFIG_DIR, runtime_config_json
from components.export.component import export
from components.export.core import ExportConfig
from components.finetune.component import finetune
from components.finetune.core import FinetuneConfig
from components.index.component import index
from components.index.core import IndexConfig
from components.prep.component import prep
from components.prep.core import PrepConfig
from components.sampling.component import sampling
from components.sampling.core import SamplingConfig
from components.synthesis.component import synthesis
from components.synthesis.core import SynthesisConfig
from pipelines.platform import (
    BASE_WEIGHT_TASKS,
    CONFIG_MAP_KEYS,
    GPU_TASKS,
    MLFLOW_CLIENT_LABEL,
    RUN_ID_FIELD,
    S3_SECRET_KEYS,
    TEACHER_SECRET_KEYS,
    PlatformSettings,
    StepResources,
    load_platform,
)

PIPELINE_NAME = "prodtune"
BASE_CACHE_MOUNT = "/var/cache/prodtune/base-models"

# Which YAML each step reads; a profile dir (e.g. configs/local/) overrides files it contains.
# The two fine-tunes are one component and one config type: only their YAML differs.
STEP_CONFIGS = {
    "prep": PrepConfig,
    "index": IndexConfig,
    "sampling": SamplingConfig,
    "synthesis": SynthesisConfig,
    "describer": FinetuneConfig,
    "qa": FinetuneConfig,
    "export": ExportConfig,
}


def config_path(step: str, profile: str | None = None) -> Path:
    """`configs/<profile>/<step>.yaml` if it exists, else `configs/<step>.yaml`."""
    if profile:
        candidate = CONFIG_DIR / profile / f"{step}.yaml"
        if candidate.is_file():
            return candidate
    return CONFIG_DIR / f"{step}.yaml"


def load_step_configs(profile: str | None = None, overrides: dict[str, dict] | None = None) -> dict[str, str]:
    """Config JSON per step, ready to pass as pipeline parameters: checked here, but `${VAR}` is
    expanded by the component in its pod (this machine's paths and env never reach the package)."""
    overrides = overrides or {}
    return {
        step: runtime_config_json(model, config_path(step, profile), overrides.get(step))
        for step, model in STEP_CONFIGS.items()
    }


class PipelineOutputs(NamedTuple):
    """The exported models (GGUF files, Modelfile, export summary), one per task."""

    describer: Model
    qa: Model


def build_pipeline(platform: PlatformSettings | None = None, pipeline_root: str | None = None):
    """The pipeline graph; with `platform`, tasks get Kubernetes resources, GPUs, Secrets, retries.

    `pipeline_root` (s3://bucket/prefix, minio://...) is where KFP stores artifacts; None keeps
    the cluster's default (the `kfp-launcher` ConfigMap, else KFP's MinIO).
    """

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Product catalogue to fine-tuned, served LLMs.",
        pipeline_root=pipeline_root or None,
    )
    def prodtune_pipeline(
        input_uri: str,
        prep_config: str,
        index_config: str,
        sampling_config: str,
        synthesis_config: str,
        describer_config: str,
        qa_config: str,
        export_config: str,
        checkpoint_root: str = "",
    ) -> PipelineOutputs:
        prep_task = prep(input_uri=input_uri, config_json=prep_config).set_display_name("prep")
        sample_task = sampling(processed=prep_task.outputs["processed"], config_json=sampling_config)
        sample_task.set_display_name("sampling")
        # Index after prep: synthesis builds QA contexts from it as serving will (issue 12).
        index_task = index(processed=prep_task.outputs["processed"], config_json=index_config)
        index_task.set_display_name("index")
        synth_task = synthesis(
            sample=sample_task.outputs["sample"],
            index=index_task.outputs["store"],
            config_json=synthesis_config,
        )
        synth_task.set_display_name("synthesis")
        tasks = {"prep": prep_task, "index": index_task, "sampling": sample_task, "synthesis": synth_task}
        exported = {}
        for task_name, cfg in (("describer", describer_config), ("qa", qa_config)):
            ft = finetune(
                dataset=synth_task.outputs["dataset"],
                config_json=cfg,
                checkpoint_uri=checkpoint_root,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            ft.set_display_name(f"finetune-{task_name}")
            ex = export(model=ft.outputs["model"], config_json=export_config)
            ex.set_display_name(f"export-{task_name}")
            exported[task_name] = ex.outputs["exported"]
            tasks[f"finetune-{task_name}"], tasks[f"export-{task_name}"] = ft, ex
        if platform is not None:
            for name, task in tasks.items():
                apply_platform(task, name, platform)
        return PipelineOutputs(describer=exported["describer"], qa=exported["qa"])

    return prodtune_pipeline


def apply_platform(task: dsl.PipelineTask, name: str, platform: PlatformSettings) -> None:
    """Everything Kubernetes-specific about one task, keyed by its display name."""
    from kfp import kubernetes

    res = platform.steps[name]
    _resources(task, res, platform)
    task.set_retry(
        num_retries=res.retries,
        backoff_duration=platform.retry_backoff,
        backoff_factor=platform.retry_backoff_factor,
        backoff_max_duration=platform.retry_backoff_max,
    )
    task.set_caching_options(enable_caching=res.caching)
    kubernetes.set_timeout(task, res.timeout_seconds)
    kubernetes.set_security_context(
        task, run_as_user=platform.run_as_user, run_as_group=platform.run_as_group, run_as_non_root=True
    )
    # Secrets by name only; the kubelet resolves them. The S3 keys are optional (IRSA).
    kubernetes.use_secret_as_env(
        task,
        secret_name=platform.s3_secret,
        secret_key_to_env={k: k for k in S3_SECRET_KEYS},
        optional=platform.s3_secret_optional,
    )
    kubernetes.use_config_map_as_env(
        task, config_map_name=platform.config_map, config_map_key_to_env={k: k for k in CONFIG_MAP_KEYS}
    )
    if name == "synthesis":
        kubernetes.use_secret_as_env(
            task, secret_name=platform.teacher_secret, secret_key_to_env={k: k for k in TEACHER_SECRET_KEYS}
        )
    # The KFP run id, as MLflow tag prodtune.pipeline_run on every step's run (tracking.step_run).
    kubernetes.use_field_path_as_env(task, env_name="PRODTUNE_PIPELINE_RUN", field_path=RUN_ID_FIELD)
    kubernetes.add_pod_label(task, label_key=MLFLOW_CLIENT_LABEL[0], label_value=MLFLOW_CLIENT_LABEL[1])
    if name in GPU_TASKS:
        _gpu(task, platform)
    if name in BASE_WEIGHT_TASKS:  # fine-tune loads the base; the export gate scores it too
        _base_weights_access(task, platform)


def _resources(task: dsl.PipelineTask, res: StepResources, platform: PlatformSettings) -> None:
    from kfp import kubernetes

    task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.host_memory_request).set_memory_limit(res.host_memory_limit)
    kubernetes.add_ephemeral_volume(
        task,
        volume_name="scratch",
        mount_path=platform.scratch_mount,
        access_modes=["ReadWriteOnce"],
        size=res.scratch_disk,
        storage_class_name=platform.scratch_storage_class,
    )
    # Large temporary files (downloads, merges, GGUF conversion) land on the scratch volume.
    task.set_env_variable("TMPDIR", platform.scratch_mount)
    task.set_env_variable("HF_HOME", f"{platform.scratch_mount}/hf")


def _gpu(task: dsl.PipelineTask, platform: PlatformSettings) -> None:
    from kfp import kubernetes

    gpu = platform.gpu
    task.set_accelerator_type(gpu.resource).set_accelerator_limit(gpu.count)
    # One node selector term (its expressions are ANDed; separate add_node_affinity calls would
    # become separate terms, which Kubernetes ORs).
    kubernetes.add_node_affinity(
        task,
        match_expressions=[
            {"key": gpu.memory_label, "operator": "Gt", "values": [str(gpu.memory_mib_greater_than)]},
            {"key": gpu.present_label, "operator": "In", "values": ["true"]},
        ],
    )
    kubernetes.add_toleration(task, key=gpu.taint_key, operator="Exists", effect="NoSchedule")


def _base_weights_access(task: dsl.PipelineTask, platform: PlatformSettings) -> None:
    from kfp import kubernetes

    # components/common/base_weights.py reads HF_TOKEN and PRODTUNE_BASE_CACHE in the pod.
    kubernetes.use_secret_as_env(
        task, secret_name=platform.hf_secret, secret_key_to_env={"HF_TOKEN": "HF_TOKEN"}, optional=True
    )
    if platform.base_cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=platform.base_cache_pvc, mount_path=BASE_CACHE_MOUNT)
        task.set_env_variable("PRODTUNE_BASE_CACHE", BASE_CACHE_MOUNT)


__all__ = ["PlatformSettings", "build_pipeline", "load_platform", "load_step_configs"]
