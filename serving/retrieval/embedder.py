"""Re-export: the embedder lives in components/common/retrieval/embedder.py (the index step and
synthesis embed with the same code, so vectors and queries agree)."""

from components.common.retrieval.embedder import SentenceEmbedder, TextEmbedder, pick_device

__all__ = ["SentenceEmbedder", "TextEmbedder", "pick_device"]
