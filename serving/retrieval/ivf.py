"""An inverted-file (IVF) index in numpy for cosine search over unit vectors.

Spherical k-means on a sample gives `nlist` centroids; every vector goes to its nearest centroid's
list, and rows are stored list by list so one list is one contiguous slice. A query scores the
centroids, scans the `nprobe` best lists exactly and returns exact cosine scores, so the similarity
threshold applies to true scores; only recall is approximate (measured in benchmarks/retrieval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm


@dataclass
class IVFIndex:
    centroids: np.ndarray  # (nlist, d) float32, unit rows
    offsets: np.ndarray  # (nlist + 1,) int64: list l holds rows offsets[l]:offsets[l+1]

    @property
    def nlist(self) -> int:
        return len(self.centroids)

    def candidate_slices(self, query: np.ndarray, nprobe: int) -> list[tuple[int, int]]:
        scores = self.centroids @ query
        nprobe = min(nprobe, self.nlist)
        best = np.argpartition(-scores, nprobe - 1)[:nprobe]
        return [(int(self.offsets[i]), int(self.offsets[i + 1])) for i in best]


def _assign(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(vectors), dtype=np.int32)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.argmax(vectors[start : start + chunk] @ centroids.T, axis=1)
    return out


def spherical_kmeans(
    sample: np.ndarray, nlist: int, *, iters: int = 10, seed: int = 0, progress: bool = False
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centroids = sample[rng.choice(len(sample), nlist, replace=False)].copy()
    for _ in tqdm(range(iters), desc="k-means", disable=not progress):
        labels = _assign(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, sample)
        counts = np.bincount(labels, minlength=nlist)
        empty = counts == 0
        # An empty list is re-seeded with a random sample point rather than left dead.
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    return centroids


def build_ivf(
    vectors: np.ndarray,
    nlist: int,
    *,
    sample_size: int = 65536,
    iters: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> tuple[IVFIndex, np.ndarray]:
    """Train and assign. Returns the index and the row order (apply it to vectors and metadata)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    sample_idx = rng.choice(n, min(n, max(sample_size, nlist)), replace=False)
    centroids = spherical_kmeans(
        vectors[np.sort(sample_idx)], nlist, iters=iters, seed=seed, progress=progress
    )
    labels = _assign(vectors, centroids)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=nlist)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return IVFIndex(centroids, offsets), order
