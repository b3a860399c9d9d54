"""The production vector store: Weaviate through weaviate-client v4.

The v4 client speaks REST (schema, meta) on the HTTP port and gRPC (queries, batch inserts) on the
gRPC port, 50051 by default: both must be reachable, and `is_live()` checks only HTTP. Objects get
deterministic UUIDs from the product uid (re-indexing overwrites instead of duplicating). Vectors
are ours (self-provided, no Weaviate vectorizer) and the index uses cosine distance, so
score = 1 - distance, the same cosine the embedded store returns; the threshold is applied again
on our side with `passes()`, so its boundary behaves exactly as in the embedded store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from components.common.retrieval.base import Hit, normalise_rows, passes

log = logging.getLogger(__name__)

PROPERTIES = ("uid", "title", "content")
# Widen the server-side distance cut a hair: float rounding on the server must not drop a hit that
# is exactly at the threshold; the exact cut is ours (passes()).
_SERVER_SLACK = 1e-5


class WeaviateSettings(BaseSettings):
    """Where Weaviate is: the same `PRODTUNE_SERVING_WEAVIATE_*` variables serving reads, so the
    index step (which must not import serving/) and the router connect to one server."""

    model_config = SettingsConfigDict(env_prefix="PRODTUNE_SERVING_", extra="ignore", frozen=True)

    weaviate_http_host: str = "localhost"
    weaviate_http_port: int = 8080
    weaviate_http_secure: bool = False
    weaviate_grpc_host: str = "localhost"
    weaviate_grpc_port: int = 50051
    weaviate_grpc_secure: bool = False
    weaviate_api_key: SecretStr | None = None
    weaviate_collection: str = "Product"


def connect_weaviate(settings: Any) -> Any:
    """A connected `weaviate.WeaviateClient` from anything with the `weaviate_*` fields of
    `WeaviateSettings` (serving's settings have them too); use it as a context manager so sockets
    are closed."""
    import weaviate
    from weaviate.classes.init import Auth

    key = settings.weaviate_api_key
    return weaviate.connect_to_custom(
        http_host=settings.weaviate_http_host,
        http_port=settings.weaviate_http_port,
        http_secure=settings.weaviate_http_secure,
        grpc_host=settings.weaviate_grpc_host,
        grpc_port=settings.weaviate_grpc_port,
        grpc_secure=settings.weaviate_grpc_secure,
        auth_credentials=Auth.api_key(key.get_secret_value()) if key is not None else None,
    )


class WeaviateStore:
    """`VectorStore` over one Weaviate collection (created on first use when missing)."""

    def __init__(self, client: Any, collection: str = "Product") -> None:
        self.client = client
        self.name = collection
        self._collection: Any = None

    @property
    def collection(self) -> Any:
        if self._collection is None:
            self.ensure_collection()
            self._collection = self.client.collections.get(self.name)
        return self._collection

    def ensure_collection(self) -> None:
        from weaviate.classes.config import Configure, DataType, Property, VectorDistances

        if self.client.collections.exists(self.name):
            return
        log.info("creating Weaviate collection %s", self.name)
        self.client.collections.create(
            self.name,
            properties=[
                Property(name="uid", data_type=DataType.TEXT, skip_vectorization=True),
                Property(name="title", data_type=DataType.TEXT),
                Property(name="content", data_type=DataType.TEXT),
            ],
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
            ),
        )

    def add(
        self, uids: Sequence[str], titles: Sequence[str], contents: Sequence[str], vectors: np.ndarray
    ) -> None:
        from weaviate.classes.data import DataObject
        from weaviate.util import generate_uuid5

        vecs = normalise_rows(vectors)
        if not len(uids) == len(titles) == len(contents) == len(vecs):
            raise ValueError("uids, titles, contents and vectors must have the same length")
        objects = [
            DataObject(
                properties={"uid": str(u), "title": t, "content": c},
                vector=v.tolist(),
                uuid=generate_uuid5(str(u)),
            )
            for u, t, c, v in zip(uids, titles, contents, vecs, strict=True)
        ]
        result = self.collection.data.insert_many(objects)
        if result.has_errors:
            # Never lose rows silently: the indexer stops, with the first server message.
            first = next(iter(result.errors.values()))
            raise RuntimeError(
                f"Weaviate rejected {len(result.errors)} of {len(objects)} objects: {first.message}"
            )

    def search(self, vector: np.ndarray, k: int = 5, min_score: float = -1.0) -> list[Hit]:
        from weaviate.classes.query import MetadataQuery

        query = normalise_rows(vector)[0].tolist()
        max_distance = None if min_score <= -1.0 else (1.0 - min_score) + _SERVER_SLACK
        response = self.collection.query.near_vector(
            near_vector=query,
            limit=k,
            distance=max_distance,
            return_metadata=MetadataQuery(distance=True),
            return_properties=list(PROPERTIES),
        )
        return hits_from_response(response, min_score)

    def count(self) -> int:
        return int(self.collection.aggregate.over_all(total_count=True).total_count or 0)


def hits_from_response(response: Any, min_score: float) -> list[Hit]:
    """`QueryReturn` -> hits at or above `min_score`, best first."""
    hits = []
    for obj in response.objects:
        distance = obj.metadata.distance
        if distance is None:
            raise RuntimeError("Weaviate returned no distance: was return_metadata set?")
        score = 1.0 - float(distance)
        if passes(np.array([score]), min_score)[0]:
            props = obj.properties
            hits.append(
                Hit(str(props["uid"]), score, str(props.get("title", "")), str(props.get("content", "")))
            )
    return sorted(hits, key=lambda h: -h.score)
