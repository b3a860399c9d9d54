"""Re-export: the embedded store lives in components/common/retrieval/embedded.py (the index step
writes it, serving reads it)."""

from components.common.retrieval.embedded import EmbeddedStore

__all__ = ["EmbeddedStore"]
