"""The embedded vector store: numpy in memory, persisted as `vectors.npy` + `meta.parquet`.

Small stores are searched exactly (one matrix-vector product). `build_index()` adds an IVF index
(serving/retrieval/ivf.py) for catalogue-sized stores; it reorders rows list by list and is saved as
`ivf.npz` next to the vectors, so serving loads a ready index by path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common.atomic import atomic_path, write_json
from components.common.errors import InputError
from serving.retrieval.base import Hit, normalise_rows, passes
from serving.retrieval.ivf import IVFIndex, build_ivf

VECTORS_FILE = "vectors.npy"
META_FILE = "meta.parquet"
IVF_FILE = "ivf.npz"
INFO_FILE = "store.json"


class EmbeddedStore:
    def __init__(self, dim: int, *, nprobe: int = 32) -> None:
        self.dim = dim
        self.nprobe = nprobe
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._pending: list[np.ndarray] = []
        self.uids: list[str] = []
        self.titles: list[str] = []
        self.contents: list[str] = []
        self.ivf: IVFIndex | None = None

    # -- writing -------------------------------------------------------------------------------
    def add(
        self, uids: Sequence[str], titles: Sequence[str], contents: Sequence[str], vectors: np.ndarray
    ) -> None:
        vecs = normalise_rows(vectors)
        if not len(uids) == len(titles) == len(contents) == len(vecs):
            raise ValueError("uids, titles, contents and vectors must have the same length")
        if vecs.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vecs.shape[1]}, store expects {self.dim}")
        self._pending.append(vecs)
        self.uids.extend(str(u) for u in uids)
        self.titles.extend(titles)
        self.contents.extend(contents)
        self.ivf = None  # new rows are not in any list: fall back to exact search until rebuilt

    @property
    def vectors(self) -> np.ndarray:
        if self._pending:
            self._vectors = np.concatenate([self._vectors, *self._pending])
            self._pending = []
        return self._vectors

    def count(self) -> int:
        return len(self.uids)

    def build_index(self, nlist: int | None = None, *, progress: bool = False, **kwargs: object) -> None:
        """IVF over the current rows; nlist defaults to about sqrt(n)."""
        vectors = self.vectors
        nlist = nlist or max(1, int(np.sqrt(len(vectors))))
        ivf, order = build_ivf(vectors, nlist, progress=progress, **kwargs)  # type: ignore[arg-type]
        self._vectors = vectors[order]
        self.uids = [self.uids[i] for i in order]
        self.titles = [self.titles[i] for i in order]
        self.contents = [self.contents[i] for i in order]
        self.ivf = ivf

    # -- reading -------------------------------------------------------------------------------
    def scores(self, query: np.ndarray, *, exact: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
        """(row ids, cosine scores) of the candidates: all rows (ids None: the identity), or the
        rows of the IVF lists probed."""
        q = normalise_rows(query)[0]
        vectors = self.vectors
        if self.ivf is None or exact:
            return None, vectors @ q
        slices = self.ivf.candidate_slices(q, self.nprobe)
        rows = np.concatenate([np.arange(a, b) for a, b in slices])
        scores = np.concatenate([vectors[a:b] @ q for a, b in slices])
        return rows, scores

    def search(
        self, vector: np.ndarray, k: int = 5, min_score: float = -1.0, *, exact: bool = False
    ) -> list[Hit]:
        if self.count() == 0 or k <= 0:
            return []
        rows, scores = self.scores(vector, exact=exact)
        # Top k first, then the threshold: the same result as filtering first (the cut is monotone
        # in the score), without a pass over every row.
        top = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
        top = top[passes(scores[top], min_score)]
        top = top[np.argsort(-scores[top], kind="stable")]
        ids = top if rows is None else rows[top]
        return [
            Hit(self.uids[r], float(scores[t]), self.titles[r], self.contents[r])
            for r, t in zip(ids.tolist(), top.tolist(), strict=True)
        ]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / VECTORS_FILE) as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.vectors)
        table = pa.table({"uid": self.uids, "title": self.titles, "content": self.contents})
        with atomic_path(directory / META_FILE) as tmp:
            pq.write_table(table, tmp)
        if self.ivf is not None:
            with atomic_path(directory / IVF_FILE) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, centroids=self.ivf.centroids, offsets=self.ivf.offsets)
        elif (directory / IVF_FILE).exists():
            (directory / IVF_FILE).unlink()  # a stale index would point at the wrong rows
        info = {"dim": self.dim, "count": self.count(), "ivf_nlist": self.ivf.nlist if self.ivf else 0}
        write_json(directory / INFO_FILE, info)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, nprobe: int = 32, mmap: bool = False) -> EmbeddedStore:
        directory = Path(directory)
        for name in (VECTORS_FILE, META_FILE):
            if not (directory / name).is_file():
                raise InputError(f"vector store incomplete: {name} missing", path=directory)
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r" if mmap else None)
        meta = pq.read_table(directory / META_FILE)
        if meta.num_rows != len(vectors):
            raise InputError(
                f"{META_FILE} has {meta.num_rows} rows, {VECTORS_FILE} {len(vectors)}", path=directory
            )
        store = cls(int(vectors.shape[1]), nprobe=nprobe)
        store._vectors = vectors
        store.uids = meta.column("uid").to_pylist()
        store.titles = meta.column("title").to_pylist()
        store.contents = meta.column("content").to_pylist()
        if (directory / IVF_FILE).is_file():
            with np.load(directory / IVF_FILE) as npz:
                store.ivf = IVFIndex(npz["centroids"], npz["offsets"])
        return store
