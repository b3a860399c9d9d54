"""The KFP prep component: its function body runs prep into the Dataset directory and sets metadata."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pandas as pd
from kfp.dsl import Dataset

from components.prep.component import prep

LONG = "Soft layered ballet tutu for little dancers, elastic waist, machine washable, twelve inches long."


def test_component_function_writes_outputs_and_metadata(tmp_path: Path) -> None:
    lines = [
        orjson.dumps({"uid": "0000031909", "title": "Tutu &amp; Bow", "content": f"<p>{LONG}</p>"}),
        orjson.dumps({"uid": "0000031910", "title": "Tutu", "content": ""}),
    ]
    data = tmp_path / "trn.json"
    data.write_bytes(b"\n".join(lines) + b"\n")
    processed = Dataset(name="processed", uri=str(tmp_path / "processed"))

    # python_func is the plain function KFP runs inside the container.
    prep.python_func(
        input_uri=str(data), config_json=json.dumps({"min_content_chars": 50}), processed=processed
    )

    out = Path(processed.path)
    assert json.loads((out / "prep-summary.json").read_text()) == {
        "lines_read": 2,
        "kept": 1,
        "dropped": {"empty_content": 1},
    }
    df = pd.read_parquet(out / "trn-processed.parquet")
    assert df.to_dict("records") == [{"uid": "0000031909", "title": "Tutu & Bow", "content": LONG}]
    assert processed.metadata == {"lines_read": 2, "kept": 1, "dropped": {"empty_content": 1}}


def test_component_interface() -> None:
    spec = prep.component_spec
    assert set(spec.inputs) == {"input_uri", "config_json"}
    assert set(spec.outputs) == {"processed"}
