"""The prodtune KFP v2 pipeline: the same components run on Kubernetes and in `kfp.local`.

Step configs are passed as JSON strings (validated again inside each component), so a submitted run
records exactly the config it ran with. Kubernetes-only settings (GPU node selector, resources,
secrets) are applied by `kubernetes_settings()` at compile time: the local runner has no resources,
accelerators or secrets, and keeping the pipeline's logic in the components means it does not need them.

No `from __future__ import annotations` here: KFP reads the pipeline's annotations as real types.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model

from components.common.config import CONFIG_DIR, load_config
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

PIPELINE_NAME = "prodtune"

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


@dataclass
class PlatformSettings:
    """Cluster-only knobs; ignored by the local runner."""

    gpu_node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.memory-class": "16gb"})
    gpu_memory_request: str = "16G"
    cpu_memory_request: str = "4G"
    s3_secret: str = "prodtune-s3"
    teacher_secret: str = "prodtune-teacher"
    # Non-secret settings (manifests/kustomization.yaml generates it).
    config_map: str = "prodtune-config"


def config_path(step: str, profile: str | None = None) -> Path:
    """`configs/<profile>/<step>.yaml` if it exists, else `configs/<step>.yaml`."""
    if profile:
        candidate = CONFIG_DIR / profile / f"{step}.yaml"
        if candidate.is_file():
            return candidate
    return CONFIG_DIR / f"{step}.yaml"


def load_step_configs(profile: str | None = None, overrides: dict[str, dict] | None = None) -> dict[str, str]:
    """Validated config JSON per step, ready to pass as pipeline parameters."""
    overrides = overrides or {}
    return {
        step: load_config(model, config_path(step, profile), overrides.get(step)).model_dump_json()
        for step, model in STEP_CONFIGS.items()
    }


class PipelineOutputs(NamedTuple):
    """The exported models (GGUF files, Modelfile, export summary), one per task."""

    describer: Model
    qa: Model


def build_pipeline(platform: PlatformSettings | None = None):
    """The pipeline graph; with `platform`, tasks get Kubernetes resources, GPUs and secrets."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Product catalogue to fine-tuned, served LLMs.")
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
        exported = {}
        gpu_tasks, export_tasks = [], []
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
            gpu_tasks.append(ft)
            export_tasks.append(ex)
        if platform is not None:
            for task in (prep_task, index_task, sample_task, synth_task, *export_tasks):
                _cpu_task(task, platform)
            _teacher_secret(synth_task, platform)
            for task in gpu_tasks:
                _gpu_task(task, platform)
        return PipelineOutputs(describer=exported["describer"], qa=exported["qa"])

    return prodtune_pipeline


def _teacher_secret(task: dsl.PipelineTask, platform: PlatformSettings) -> None:
    from kfp import kubernetes

    # The teacher's endpoint and key reach synthesis from a Secret, never from parameters.
    kubernetes.use_secret_as_env(
        task,
        secret_name=platform.teacher_secret,
        secret_key_to_env={"OPENAI_API_KEY": "OPENAI_API_KEY", "OPENAI_BASE_URL": "OPENAI_BASE_URL"},
    )


def _cpu_task(task: dsl.PipelineTask, platform: PlatformSettings) -> None:
    from kfp import kubernetes

    task.set_memory_request(platform.cpu_memory_request)
    # S3 credentials reach the pod from a Kubernetes Secret, never from pipeline parameters.
    kubernetes.use_secret_as_env(
        task,
        secret_name=platform.s3_secret,
        secret_key_to_env={
            "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
            "PRODTUNE_S3_ENDPOINT_URL": "PRODTUNE_S3_ENDPOINT_URL",
        },
    )
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=platform.config_map,
        config_map_key_to_env={
            "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
            "PRODTUNE_S3_BUCKET": "PRODTUNE_S3_BUCKET",
        },
    )


def _gpu_task(task: dsl.PipelineTask, platform: PlatformSettings) -> None:
    from kfp import kubernetes

    _cpu_task(task, platform)
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    task.set_memory_request(platform.gpu_memory_request)
    for key, value in platform.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
