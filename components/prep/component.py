"""KFP v2 wrapper of prep: a trn.json URI in, a Dataset directory out (see core.py for the logic)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prep(input_uri: str, config_json: str, processed: Output[Dataset]) -> None:
    """Clean and filter trn.json into `processed` (a directory with the four prep outputs)."""
    # Lightweight components run this function's source alone: every import lives in the body.
    import json
    import tempfile
    from pathlib import Path

    from components.common.storage import S3Store
    from components.prep.core import PrepConfig, run_prep_tracked

    out_dir = Path(processed.path)
    # s3:// is downloaded; a local path is used as is (the S3 client is only built for s3://).
    local_input = S3Store.from_settings().fetch_to_local(input_uri, Path(tempfile.mkdtemp(prefix="prep-in-")))
    config = PrepConfig.model_validate(json.loads(config_json or "{}"))
    summary = run_prep_tracked(local_input, out_dir, config, progress=True)
    processed.metadata.update(
        {"lines_read": summary.lines_read, "kept": summary.kept, "dropped": summary.dropped}
    )
