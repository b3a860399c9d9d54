"""Sentence embeddings from a local all-MiniLM-L6-v2 directory (never from a hub)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from components.common.errors import InputError


class TextEmbedder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


class SentenceEmbedder:
    """Unit-length float32 embeddings; the model loads once, from `path` only."""

    def __init__(self, path: str | Path, *, device: str = "cpu") -> None:
        path = Path(path)
        if not (path / "modules.json").is_file():
            raise InputError("not a sentence-transformers model directory (modules.json missing)", path=path)
        # Offline by construction: a missing file must fail here, not trigger a download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        self.path = path

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)
