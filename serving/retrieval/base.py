"""Re-export: the vector store interface lives in components/common/retrieval/base.py (shared with
the index and synthesis steps, which must not import serving/)."""

from components.common.retrieval.base import Hit, VectorStore, normalise_rows, passes, threshold_to_min_score

__all__ = ["Hit", "VectorStore", "normalise_rows", "passes", "threshold_to_min_score"]
