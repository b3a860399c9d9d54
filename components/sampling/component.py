"""KFP v2 component: seeded sample of the processed catalogue (see core.py)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def sampling(processed: Input[Dataset], config_json: str, sample: Output[Dataset]) -> None:
    from components.sampling.core import SamplingConfig, run_sampling_tracked

    config = SamplingConfig.model_validate_json(config_json)
    summary = run_sampling_tracked(processed.path, sample.path, config)
    sample.metadata.update({"rows": summary.sampled, "train": summary.train, "eval": summary.eval})
