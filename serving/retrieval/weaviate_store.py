"""Re-export: the Weaviate store lives in components/common/retrieval/weaviate_store.py (the index
step writes to Weaviate, serving reads from it)."""

from components.common.retrieval.weaviate_store import (
    PROPERTIES,
    WeaviateSettings,
    WeaviateStore,
    connect_weaviate,
    hits_from_response,
)

__all__ = ["PROPERTIES", "WeaviateSettings", "WeaviateStore", "connect_weaviate", "hits_from_response"]
