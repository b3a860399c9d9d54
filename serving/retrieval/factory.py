"""Open the configured vector store: the embedded one from its directory, or Weaviate."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from serving.config import ServingSettings
from serving.retrieval.base import VectorStore


@contextlib.contextmanager
def open_store(settings: ServingSettings) -> Iterator[VectorStore]:
    """Yield the store; a Weaviate client is closed on exit (sockets leak otherwise)."""
    if settings.vector_backend == "weaviate":
        from serving.retrieval.weaviate_store import WeaviateStore, connect_weaviate

        with connect_weaviate(settings) as client:
            yield WeaviateStore(client, settings.weaviate_collection)
        return
    from serving.retrieval.embedded import EmbeddedStore

    yield EmbeddedStore.load(settings.store_path, ef_search=settings.ann_ef_search)
