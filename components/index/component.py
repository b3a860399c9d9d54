"""KFP v2 component: embed the processed catalogue into the vector store (see core.py).

Runs after prep; synthesis (QA contexts as serving builds them) and serving read its output. With
the weaviate backend the pod reaches Weaviate through the `PRODTUNE_SERVING_WEAVIATE_*` variables
(and its API key from a Secret); the artifact then holds only the descriptor naming the collection.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def index(processed: Input[Dataset], config_json: str, store: Output[Dataset]) -> None:
    from components.index.core import IndexConfig, run_index_tracked

    config = IndexConfig.model_validate_json(config_json or "{}")
    summary = run_index_tracked(processed.path, store.path, config, progress=False)
    store.metadata.update(
        {k: summary[k] for k in ("indexed", "backend", "content_key", "products_per_second") if k in summary}
    )
