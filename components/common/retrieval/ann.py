"""Approximate nearest-neighbour (HNSW) indexes from maintained libraries, behind one small interface.

The embedded store (embedded.py) keeps the float32 unit vectors itself and uses an index only to
propose candidate rows; it re-scores them exactly, so the similarity threshold is applied to true
cosines and only recall is approximate. Three libraries were benchmarked (benchmarks/retrieval,
docs/benchmarks.md): usearch, hnswlib and faiss-cpu. faiss (IndexHNSWFlat) is the default: in the
same run it built fastest and answered fastest at equal recall, ships cp311 wheels (hnswlib 0.8.0
is source-only on PyPI) and loads an index memory-mapped. The others stay selectable, so the
benchmark measures all three through this same code path.

Row ids are the store's row numbers (0..n-1), so an index needs no id mapping. Searches run on one
thread: one request of a serving worker, never all cores for one query.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

Library = Literal["usearch", "hnswlib", "faiss"]
DEFAULT_LIBRARY: Library = "faiss"
# pip distribution that provides each library (for error messages and the benchmark's report).
DISTRIBUTIONS = {"usearch": "usearch", "hnswlib": "hnswlib", "faiss": "faiss-cpu"}


@dataclass(frozen=True)
class HNSWParams:
    """One parameter set for every library, so the benchmark compares like with like.

    m: graph degree (usearch "connectivity", faiss/hnswlib "M"); ef_construction: candidate list
    while building; ef_search: candidate list while searching (the recall/latency knob, settable
    at load time); build_threads: 0 = all cores; dtype: how usearch stores vectors ("f16" halves
    the index's memory; candidates are re-scored from the store's float32 vectors anyway).
    """

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    build_threads: int = 0
    dtype: Literal["f32", "f16", "i8"] = "f32"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AnnIndex(Protocol):
    library: str

    def add(self, vectors: np.ndarray, start: int) -> None:
        """Add rows `start .. start + len(vectors) - 1` (unit float32)."""

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Row ids of up to `k` approximate nearest rows of one unit query (int64, best first)."""

    def __len__(self) -> int: ...

    def set_ef(self, ef: int) -> None: ...

    def save(self, path: Path) -> None: ...

    def nbytes(self) -> int:
        """Approximate memory the index holds (vectors it copied plus the graph)."""


def available(library: str) -> bool:
    module = "faiss" if library == "faiss" else library
    return importlib.util.find_spec(module) is not None


def _require(library: str) -> None:
    if not available(library):
        raise RuntimeError(f"ANN library {library!r} not installed: pip install {DISTRIBUTIONS[library]}")


def _threads(n: int) -> int:
    import os

    return n if n > 0 else max(1, len(os.sched_getaffinity(0)))


def _import_usearch() -> Any:
    """usearch's index module. Measured here (usearch 2.26.6, onnxruntime 1.32.0): importing usearch
    and then onnxruntime in one process segfaults, the other order works. So onnxruntime (the
    embedder's engine) is imported first whenever it is installed."""
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime  # noqa: F401

    from usearch import index

    return index


# -- usearch ----------------------------------------------------------------------------------------
class USearchIndex:
    library = "usearch"

    def __init__(self, dim: int, params: HNSWParams, index: Any = None) -> None:
        Index = _import_usearch().Index

        self.params = params
        self.index = index or Index(
            ndim=dim,
            metric="ip",  # rows are unit vectors: inner product is the cosine
            dtype=params.dtype,
            connectivity=params.m,
            expansion_add=params.ef_construction,
            expansion_search=params.ef_search,
        )

    def add(self, vectors: np.ndarray, start: int) -> None:
        keys = np.arange(start, start + len(vectors), dtype=np.uint64)
        self.index.add(keys, vectors, threads=_threads(self.params.build_threads), log=False)

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        matches = self.index.search(query, k, threads=1)
        return np.asarray(matches.keys, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    @classmethod
    def load(cls, path: Path, dim: int, params: HNSWParams, *, mmap: bool = False) -> USearchIndex:
        index = _import_usearch().Index.restore(str(path), view=mmap)
        if index is None or index.ndim != dim:
            raise ValueError(f"{path}: not a usearch index of dimension {dim}")
        loaded = cls(dim, params, index)
        loaded.set_ef(params.ef_search)
        return loaded

    def nbytes(self) -> int:
        return int(self.index.memory_usage)


# -- hnswlib ----------------------------------------------------------------------------------------
class HnswlibIndex:
    library = "hnswlib"

    def __init__(self, dim: int, params: HNSWParams, index: Any = None) -> None:
        import hnswlib

        self.params = params
        self.dim = dim
        if index is None:
            index = hnswlib.Index(space="ip", dim=dim)
            index.init_index(max_elements=1024, ef_construction=params.ef_construction, M=params.m)
        self.index = index
        self.index.set_ef(params.ef_search)

    def add(self, vectors: np.ndarray, start: int) -> None:
        need = start + len(vectors)
        if need > self.index.get_max_elements():  # grow geometrically: incremental adds stay cheap
            self.index.resize_index(max(need, 2 * self.index.get_max_elements()))
        ids = np.arange(start, need, dtype=np.int64)
        self.index.add_items(vectors, ids, num_threads=_threads(self.params.build_threads))

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        k = min(k, self.index.get_current_count())
        labels, _ = self.index.knn_query(query[None, :], k=k, num_threads=1)
        return labels[0].astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.get_current_count())

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    @classmethod
    def load(cls, path: Path, dim: int, params: HNSWParams, *, mmap: bool = False) -> HnswlibIndex:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path))  # hnswlib has no memory-mapped load
        return cls(dim, params, index)

    def nbytes(self) -> int:
        # data level: vector + links (2M) + header per element; upper levels are ~1/M of that
        per = self.dim * 4 + 2 * self.params.m * 4 + 16
        return int(self.index.get_max_elements() * per * (1 + 1 / self.params.m))


# -- faiss ------------------------------------------------------------------------------------------
class FaissIndex:
    library = "faiss"

    def __init__(self, dim: int, params: HNSWParams, index: Any = None) -> None:
        import faiss

        self.params = params
        self.dim = dim
        if index is None:
            index = faiss.IndexHNSWFlat(dim, params.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
        self.index = index
        self.index.hnsw.efSearch = params.ef_search

    def add(self, vectors: np.ndarray, start: int) -> None:
        import faiss

        if start != self.index.ntotal:
            raise ValueError(f"faiss ids are sequential: expected start {self.index.ntotal}, got {start}")
        faiss.omp_set_num_threads(_threads(self.params.build_threads))
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        import faiss

        faiss.omp_set_num_threads(1)
        _, ids = self.index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), k)
        return ids[0].astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = ef

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int, params: HNSWParams, *, mmap: bool = False) -> FaissIndex:
        import faiss

        flags = faiss.IO_FLAG_MMAP if mmap else 0
        return cls(dim, params, faiss.read_index(str(path), flags))

    def nbytes(self) -> int:
        n = self.index.ntotal
        return int(n * (self.dim * 4 + 2 * self.params.m * 4) * (1 + 1 / self.params.m))


_CLASSES: dict[str, Any] = {"usearch": USearchIndex, "hnswlib": HnswlibIndex, "faiss": FaissIndex}


def new_index(library: str, dim: int, params: HNSWParams) -> AnnIndex:
    if library not in _CLASSES:
        raise ValueError(f"unknown ANN library {library!r}; choose one of {sorted(_CLASSES)}")
    _require(library)
    return _CLASSES[library](dim, params)


def load_index(library: str, path: Path, dim: int, params: HNSWParams, *, mmap: bool = False) -> AnnIndex:
    if library not in _CLASSES:
        raise ValueError(f"unknown ANN library {library!r}; choose one of {sorted(_CLASSES)}")
    _require(library)
    return _CLASSES[library].load(path, dim, params, mmap=mmap)
