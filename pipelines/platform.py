"""Kubernetes settings of the compiled pipeline: scheduling, resources, security, retries, Secrets.

Read from `pipelines/configs/kubernetes.yaml` (validated here) and applied at compile time with
kfp-kubernetes; the local runner ignores all of it. Nothing here is a secret: Secrets and the
ConfigMap are referenced by name, their values reach the pod through the kubelet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.common.config import CONFIG_DIR
from components.common.errors import InputError

PLATFORM_CONFIG = CONFIG_DIR / "kubernetes.yaml"

# The pipeline's tasks by display name; every one needs an entry in `steps`.
TASKS = (
    "prep",
    "index",
    "sampling",
    "synthesis",
    "finetune-describer",
    "finetune-qa",
    "export-describer",
    "export-qa",
)
GPU_TASKS = ("finetune-describer", "finetune-qa")
# Tasks that read base weights (an HF id needs HF_TOKEN; a PVC caches them).
BASE_WEIGHT_TASKS = (*GPU_TASKS, "export-describer", "export-qa")

# Keys of the Secrets and ConfigMap the steps read (manifests/kfp/*/ generate them).
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
TEACHER_SECRET_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
CONFIG_MAP_KEYS = ("MLFLOW_TRACKING_URI", "PRODTUNE_S3_BUCKET", "PRODTUNE_S3_ENDPOINT_URL", "AWS_REGION")

# Pod label the MLflow NetworkPolicy (manifests/mlflow/networkpolicy.yaml) admits.
MLFLOW_CLIENT_LABEL = ("prodtune.io/mlflow-client", "true")
# KFP's own pod label carrying the run id: MLflow runs of one KFP run share it as a tag.
RUN_ID_FIELD = "metadata.labels['pipeline/runid']"

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepResources(_Strict):
    """What one task asks of its node. Host RAM and CPU as Kubernetes quantities."""

    cpu_request: str = Field(pattern=_QUANTITY)
    cpu_limit: str = Field(pattern=_QUANTITY)
    host_memory_request: str = Field(pattern=_QUANTITY)
    host_memory_limit: str = Field(pattern=_QUANTITY)
    # A generic ephemeral volume (a PVC made for the pod, deleted with it) at `scratch_mount`,
    # with TMPDIR and HF_HOME pointing into it: KFP's pipeline spec has no ephemeral-storage
    # request, and a provisioned volume is a real reservation where node disk is not.
    scratch_disk: str = Field(pattern=_QUANTITY)
    # activeDeadlineSeconds of each attempt's pod.
    timeout_seconds: int = Field(gt=0)
    # Retries of a failed attempt, spaced by exponential backoff (transient: evictions, S3, teacher).
    retries: int = Field(ge=0, le=10)
    # False where the step reads mutable inputs or changes external state (see kubernetes.yaml).
    caching: bool = True


class GpuScheduling(_Strict):
    """Where GPU tasks may run, from GPU Feature Discovery's node labels."""

    # `nvidia.com/gpu.memory` Gt this (MiB). 15000 admits a T4 (15360) and a V100-16GB (16384),
    # rejects 12 GB cards (12288).
    memory_mib_greater_than: int = Field(gt=0)
    memory_label: str = "nvidia.com/gpu.memory"
    present_label: str = "nvidia.com/gpu.present"
    resource: str = "nvidia.com/gpu"
    count: Literal[1, 2, 4, 8, 16] = 1  # KFP accepts only these
    # Taint of the GPU pool, tolerated with operator Exists.
    taint_key: str = "nvidia.com/gpu"


class PlatformSettings(_Strict):
    """Cluster-only knobs of the compiled pipeline; ignored by the local runner."""

    run_as_user: int = Field(default=10001, gt=0)
    run_as_group: int = Field(default=10001, gt=0)
    s3_secret: str = "prodtune-s3"
    # Optional: without it boto3's chain applies (IRSA / Workload Identity through the pod's role).
    s3_secret_optional: bool = True
    teacher_secret: str = "prodtune-teacher"
    # HF_TOKEN for a base_model given as an HF repo id (optional: local and s3:// bases need none).
    hf_secret: str = "prodtune-hf"
    # PVC mounted at BASE_CACHE_MOUNT as $PRODTUNE_BASE_CACHE, so base weights are downloaded once.
    base_cache_pvc: str | None = None
    config_map: str = "prodtune-config"
    scratch_mount: str = "/scratch"
    scratch_storage_class: str | None = None  # None: the cluster's default StorageClass
    retry_backoff: str = "60s"
    retry_backoff_factor: float = 2.0
    retry_backoff_max: str = "3600s"
    gpu: GpuScheduling
    steps: dict[str, StepResources]

    @field_validator("steps")
    @classmethod
    def _every_task(cls, steps: dict[str, StepResources]) -> dict[str, StepResources]:
        missing = sorted(set(TASKS) - set(steps))
        unknown = sorted(set(steps) - set(TASKS))
        if missing or unknown:
            raise ValueError(f"steps must name exactly {list(TASKS)}: missing {missing}, unknown {unknown}")
        return steps


def load_platform(path: str | Path | None = None) -> PlatformSettings:
    """PlatformSettings from YAML (default pipelines/configs/kubernetes.yaml)."""
    path = Path(path or PLATFORM_CONFIG)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read platform settings: {exc}", path=path) from exc
    try:
        return PlatformSettings.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise InputError(f"invalid platform settings: {' '.join(first[:3])}", path=path) from exc
