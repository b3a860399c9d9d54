"""A small catalogue, a hashing embedder and an embedded store built from them, for tests of the
router graph and the API that need retrieval but not the MiniLM model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from serving.retrieval.embedded import EmbeddedStore

DIM = 256
PRODUCTS = [
    ("0000031909", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu. 12 inches in length."),
    ("B000FQ2JLW", "Stainless Steel Insulated Water Bottle", "Keeps drinks cold for 24 hours."),
    ("B00BXLSPZE", "Kids Ballet Slippers Pink Leather", "Full sole leather ballet shoes for girls."),
]


class HashingEmbedder:
    """Bag of hashed words, unit length: similar wording gives a high cosine."""

    dim = DIM

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def build_store(embedder: HashingEmbedder | None = None) -> EmbeddedStore:
    embedder = embedder or HashingEmbedder()
    store = EmbeddedStore(DIM)
    uids, titles, contents = zip(*PRODUCTS, strict=True)
    store.add(uids, titles, contents, embedder.encode([f"{t}. {c}" for _, t, c in PRODUCTS]))
    return store
