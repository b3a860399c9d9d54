"""KFP v2 component: LoRA fine-tune of one model on the synthesis output (see core.py).

The pipeline runs it twice (describer, qa) and sets one GPU + 16 GB on the task.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.common.images import TRAIN_GPU_IMAGE


@dsl.component(base_image=TRAIN_GPU_IMAGE, install_kfp_package=False)
def finetune(
    dataset: Input[Dataset],
    config_json: str,
    model: Output[Model],
    checkpoint_uri: str = "",
    run_id: str = "",
    keep_checkpoints: bool = False,
) -> None:
    import shutil
    from pathlib import Path

    from components.finetune.core import FinetuneConfig, dataset_files, run_finetune_tracked

    config = FinetuneConfig.model_validate_json(config_json)
    train, evalf = dataset_files(dataset.path, config.task)
    # s3://.../<pipeline run>/<task>: a rescheduled pod of this run resumes; a new run starts fresh.
    uri = f"{checkpoint_uri.rstrip('/')}/{run_id}/{config.task}" if checkpoint_uri else None
    result = run_finetune_tracked(config, train, evalf, model.path, checkpoint_uri=uri)
    if not keep_checkpoints:  # optimizer state is for resume only; the export step needs merged/
        shutil.rmtree(Path(model.path) / "checkpoints", ignore_errors=True)
    s = result.summary
    model.metadata.update({"task": s["task"], "base_model": s["base_model"], "steps": s["steps"]})
    model.metadata.update({"backend": s["backend"], "train_rows": s["data"]["train_rows"]})
    for side in ("base", "finetuned"):
        model.metadata.update({f"{side}_{k}": v for k, v in result.eval[side].items()})
