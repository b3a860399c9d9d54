"""KFP v2 wrapper of the synthesis step. The teacher key is never a parameter: the pod gets
OPENAI_API_KEY (and OPENAI_BASE_URL) from a Kubernetes Secret via kfp-kubernetes."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def synthesis(
    sample: Input[Dataset], index: Input[Dataset], config_json: str, dataset: Output[Dataset]
) -> None:
    import json
    from pathlib import Path

    from components.synthesis.core import SynthesisConfig, run_synthesis

    config = SynthesisConfig.model_validate(json.loads(config_json or "{}"))
    # index: the index step's store; QA contexts are retrieved from it as serving does.
    # progress: tqdm lines reach the run view through the task log (`prodtune run` shows a bar)
    summary = run_synthesis(
        config, Path(sample.path), Path(dataset.path), progress=True, index_dir=Path(index.path)
    )
    dataset.metadata.update(
        {
            "products": summary["products"],
            "asked": summary["asked"],
            "with_pairs": summary["with_pairs"],
            "qa_examples": summary["examples"]["qa"],
            "prompt_version": summary["prompt_version"],
            "model": summary["model"],
        }
    )
