"""The vector store interface shared by the embedded store (local) and Weaviate (production).

Scores are cosine similarities in [-1, 1]. The UI's similarity threshold is a percent `p`; a hit is
kept when `score >= p / 100`, compared in float32 (the precision vectors are stored in) with no
tolerance, so a hit exactly at the boundary is kept and anything below it is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from components.common.errors import InputError


@dataclass(frozen=True)
class Hit:
    uid: str
    score: float
    title: str
    content: str


class VectorStore(Protocol):
    def add(
        self, uids: Sequence[str], titles: Sequence[str], contents: Sequence[str], vectors: np.ndarray
    ) -> None: ...

    def search(self, vector: np.ndarray, k: int = 5, min_score: float = -1.0) -> list[Hit]: ...

    def count(self) -> int: ...


def threshold_to_min_score(percent: float) -> float:
    """The UI's similarity percent (0-100, as in the original `rag.py`) as a cosine floor."""
    if not 0.0 <= percent <= 100.0:
        raise InputError(
            f"similarity threshold must be within 0-100 percent, got {percent}", field="threshold"
        )
    return percent / 100.0


def passes(scores: np.ndarray, min_score: float) -> np.ndarray:
    """The one comparison every store uses, so the boundary behaves the same everywhere."""
    return np.asarray(scores, dtype=np.float32) >= np.float32(min_score)


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """float32, unit length (zero rows stay zero): cosine similarity becomes a dot product."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


# What the QA model sees, in serving and in the training data synthesis builds: the top `TOP_K`
# products at or above the threshold, each description cut to `CONTEXT_CHARS` characters. Serving's
# settings default to these; synthesis reads the same values, so training contexts match serving's.
TOP_K = 3
THRESHOLD_PERCENT = 50.0
CONTEXT_CHARS = 1000


def context_products(hits: Sequence[Hit], max_chars: int = CONTEXT_CHARS) -> list[tuple[str, str]]:
    """(title, description cut to `max_chars`) per hit, best first: the QA context's products."""
    return [(h.title, h.content[:max_chars]) for h in hits]
