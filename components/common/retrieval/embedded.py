"""The embedded vector store: float32 unit vectors in numpy plus an HNSW index, persisted in a directory.

    vectors.npy     (n, d) float32 unit rows: the exact vectors (memory-mapped by serving)
    meta.parquet    uid, title, content (and text_sha256 when the indexer wrote it), row order = ids
    index.<library> the ANN graph over the same rows (ann.py), when built
    store.json      dim, count, index library and parameters, the indexer's content key

Small stores are searched exactly (one matrix-vector product). `build_index()` adds an HNSW index
for catalogue-sized stores; after that `add()` inserts new rows into it incrementally. A query asks
the index for candidate rows and re-scores them against the float32 vectors, so every returned
score is the true cosine and the similarity threshold (`passes`) cuts on it exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common.atomic import atomic_path, write_json
from components.common.errors import InputError
from components.common.retrieval.ann import DEFAULT_LIBRARY, AnnIndex, HNSWParams, load_index, new_index
from components.common.retrieval.base import Hit, normalise_rows, passes

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.npy"
META_FILE = "meta.parquet"
INFO_FILE = "store.json"
_STALE = ("ivf.npz",)  # files of earlier store layouts that would point at the wrong rows
# Candidates fetched from the index per requested hit, then re-scored exactly.
RESCORE_FACTOR = 2


def index_file(library: str) -> str:
    return f"index.{library}"


class EmbeddedStore:
    def __init__(self, dim: int, *, ef_search: int | None = None) -> None:
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._pending: list[np.ndarray] = []
        self.uids: list[str] = []
        self.titles: list[str] = []
        self.contents: list[str] = []
        self.text_sha: list[str] | None = None  # per-row content key, when the indexer provides it
        self.index: AnnIndex | None = None
        self.index_params: HNSWParams | None = None
        self.ef_search = ef_search
        self.info: dict[str, Any] = {}  # extra keys saved in store.json (e.g. the indexer's key)

    # -- writing -------------------------------------------------------------------------------
    def add(
        self,
        uids: Sequence[str],
        titles: Sequence[str],
        contents: Sequence[str],
        vectors: np.ndarray,
        *,
        text_sha: Sequence[str] | None = None,
    ) -> None:
        vecs = normalise_rows(vectors)
        if not len(uids) == len(titles) == len(contents) == len(vecs):
            raise ValueError("uids, titles, contents and vectors must have the same length")
        if vecs.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vecs.shape[1]}, store expects {self.dim}")
        start = self.count()
        self._pending.append(vecs)
        self.uids.extend(str(u) for u in uids)
        self.titles.extend(titles)
        self.contents.extend(contents)
        if text_sha is not None or self.text_sha is not None:
            self.text_sha = (self.text_sha or [""] * start) + list(text_sha or [""] * len(vecs))
        if self.index is not None:  # incremental: new rows go straight into the graph
            self.index.add(vecs, start)

    @property
    def vectors(self) -> np.ndarray:
        if self._pending:
            self._vectors = np.concatenate([np.asarray(self._vectors), *self._pending])
            self._pending = []
        return self._vectors

    def count(self) -> int:
        return len(self.uids)

    def build_index(
        self, library: str = DEFAULT_LIBRARY, params: HNSWParams | None = None, *, chunk: int = 100_000
    ) -> None:
        """HNSW over the current rows (chunked adds keep the progress log readable)."""
        params = params or HNSWParams()
        index = new_index(library, self.dim, params)
        vectors = self.vectors
        for start in range(0, len(vectors), chunk):
            index.add(np.ascontiguousarray(vectors[start : start + chunk]), start)
            log.info("%s index: %d / %d rows", library, min(start + chunk, len(vectors)), len(vectors))
        self.index, self.index_params = index, params
        if self.ef_search:
            index.set_ef(self.ef_search)

    # -- reading -------------------------------------------------------------------------------
    def scores(
        self, query: np.ndarray, k: int, *, exact: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """(row ids, true cosine scores) of the candidates: every row (ids None: the identity), or
        the rows the index proposes for the top `k`."""
        q = normalise_rows(query)[0]
        vectors = self.vectors
        if self.index is None or exact:
            return None, vectors @ q
        rows = self.index.candidates(q, max(k, RESCORE_FACTOR * k))
        rows = np.sort(rows[rows >= 0])  # sorted: memory-mapped rows are read in file order
        return rows, vectors[rows] @ q

    def search(
        self, vector: np.ndarray, k: int = 5, min_score: float = -1.0, *, exact: bool = False
    ) -> list[Hit]:
        if self.count() == 0 or k <= 0:
            return []
        rows, scores = self.scores(vector, k, exact=exact)
        # Top k first, then the threshold: the same result as filtering first (the cut is monotone
        # in the score), without a pass over every row.
        top = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
        top = top[passes(scores[top], min_score)]
        top = top[np.lexsort((top, -scores[top]))]  # best first; ties by row, deterministic
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
        columns: dict[str, list[str]] = {"uid": self.uids, "title": self.titles, "content": self.contents}
        if self.text_sha is not None:
            columns["text_sha256"] = self.text_sha
        with atomic_path(directory / META_FILE) as tmp:
            pq.write_table(pa.table(columns), tmp)
        for old in directory.glob("index.*"):  # an index of other rows or another library
            if self.index is None or old.name != index_file(self.index.library):
                old.unlink()
        for name in _STALE:
            (directory / name).unlink(missing_ok=True)
        info: dict[str, Any] = {**self.info, "dim": self.dim, "count": self.count(), "index": None}
        if self.index is not None and self.index_params is not None:
            with atomic_path(directory / index_file(self.index.library)) as tmp:
                self.index.save(tmp)
            info["index"] = {
                "library": self.index.library,
                "params": self.index_params.as_dict(),
                "count": len(self.index),
            }
        write_json(directory / INFO_FILE, info)
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, ef_search: int | None = None, mmap: bool = False
    ) -> EmbeddedStore:
        """Open a saved store; `ef_search` overrides the saved search width, `mmap` maps the
        vectors (and the index, where the library can) instead of reading them into memory."""
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
        store = cls(int(vectors.shape[1]), ef_search=ef_search)
        store._vectors = vectors
        store.uids = meta.column("uid").to_pylist()
        store.titles = meta.column("title").to_pylist()
        store.contents = meta.column("content").to_pylist()
        if "text_sha256" in meta.column_names:
            store.text_sha = meta.column("text_sha256").to_pylist()
        info_path = directory / INFO_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        store.info = {k: v for k, v in info.items() if k not in ("dim", "count", "index")}
        if info.get("index"):
            store._load_index(directory, info["index"], mmap)
        return store

    def _load_index(self, directory: Path, spec: dict[str, Any], mmap: bool) -> None:
        library = spec["library"]
        params = HNSWParams(**spec["params"])
        if self.ef_search:
            params = HNSWParams(**{**params.as_dict(), "ef_search": self.ef_search})
        path = directory / index_file(library)
        if not path.is_file():
            raise InputError(f"store.json names a {library} index but {path.name} is missing", path=directory)
        index = load_index(library, path, self.dim, params, mmap=mmap)
        if len(index) != self.count():
            raise InputError(
                f"{path.name} holds {len(index)} rows, the store {self.count()}: rebuild the index",
                path=directory,
            )
        self.index, self.index_params = index, params
