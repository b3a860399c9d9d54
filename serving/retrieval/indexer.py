"""Re-export: the catalogue indexer lives in components/common/retrieval/indexer.py (run by the
index step, components/index, and by `prodtune index`)."""

from components.common.retrieval.indexer import IndexSummary, embedding_text, index_catalogue

__all__ = ["IndexSummary", "embedding_text", "index_catalogue"]
