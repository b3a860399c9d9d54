"""Index the processed catalogue (`trn-processed.parquet`: uid, title, content) into a vector store.

Rows are read in batches (the catalogue is ~1.2M rows: never all text in memory at once beyond what
the store keeps), embedded as "title. content[:N]" and added batch by batch with a progress bar.
Rows with an empty title are skipped and counted: nothing is dropped silently.

Re-runs are cheap: every row carries the sha256 of the text it was embedded from, and with
`reuse=` (the store of an earlier run) a row whose uid and text are unchanged takes its old vector
instead of being embedded again. `content_key()` names a whole build (catalogue bytes, embedder,
text layout), so the index step can skip a build whose output already exists.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from components.common.errors import InputError
from components.common.retrieval.base import VectorStore
from components.common.retrieval.embedder import TextEmbedder

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("uid", "title", "content")
LAYOUT_VERSION = "1"  # of embedding_text(): bump when it changes, so content keys change


@dataclass
class IndexSummary:
    rows_read: int = 0
    indexed: int = 0
    reused: int = 0  # rows whose vector came from the earlier store (not embedded again)
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"rows_read": self.rows_read, "indexed": self.indexed}
        if self.reused:
            out["reused"] = self.reused
        out["skipped"] = dict(self.skipped)
        return out


def embedding_text(title: str, content: str, max_chars: int) -> str:
    """What is embedded for a product; the same layout at index time and in tests."""
    title = title.strip()
    content = (content or "").strip()[:max_chars]
    return f"{title}. {content}" if content else title


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_key(parquet_path: str | Path, embedder_id: str, content_chars: int, limit: int | None) -> str:
    """Names one build: same catalogue bytes + embedder + text layout -> same vectors."""
    parts = [file_sha(Path(parquet_path)), embedder_id, str(content_chars), str(limit), LAYOUT_VERSION]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


class _Reuse:
    """uid -> (text sha, row) of an earlier store, for vectors that need no new embedding."""

    def __init__(self, store: Any) -> None:
        self.store = store
        shas = getattr(store, "text_sha", None) or []
        self.rows = {u: (s, i) for i, (u, s) in enumerate(zip(store.uids, shas, strict=True)) if s}

    def split(self, uids: list[str], shas: list[str]) -> tuple[list[int], list[int]]:
        """Positions to embed, and positions whose vectors the earlier store has."""
        fresh, known = [], []
        for pos, (u, s) in enumerate(zip(uids, shas, strict=True)):
            (known if self.rows.get(u, ("", 0))[0] == s else fresh).append(pos)
        return fresh, known

    def vectors(self, uids: list[str]) -> np.ndarray:
        return np.asarray(self.store.vectors[[self.rows[u][1] for u in uids]], dtype=np.float32)


def index_catalogue(
    parquet_path: str | Path,
    store: VectorStore,
    embedder: TextEmbedder,
    *,
    batch_size: int = 256,
    content_chars: int = 500,
    limit: int | None = None,
    progress: bool = True,
    reuse: Any = None,
) -> IndexSummary:
    path = Path(parquet_path)
    if not path.is_file():
        raise InputError("catalogue parquet not found", path=path)
    pf = pq.ParquetFile(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"missing column(s) {missing}", path=path, field=missing[0])
    total = pf.metadata.num_rows if limit is None else min(limit, pf.metadata.num_rows)
    known = _Reuse(reuse) if reuse is not None else None
    summary = IndexSummary()
    bar = tqdm(total=total, desc="indexing", unit="rows", disable=not progress)
    for batch in pf.iter_batches(batch_size=batch_size, columns=list(REQUIRED_COLUMNS)):
        rows = batch.to_pylist()[: total - summary.rows_read]
        summary.rows_read += len(rows)
        keep = [r for r in rows if (r["title"] or "").strip() and r["uid"] is not None]
        if len(keep) < len(rows):
            summary.skipped["empty_title_or_uid"] = (
                summary.skipped.get("empty_title_or_uid", 0) + len(rows) - len(keep)
            )
        if keep:
            _add_rows(store, embedder, keep, content_chars, min(batch_size, 128), known, summary)
        bar.update(len(rows))
        if summary.rows_read >= total:
            break
    bar.close()
    assert summary.rows_read == summary.indexed + sum(summary.skipped.values())
    log.info("indexed %s", summary.as_dict())
    return summary


def _add_rows(
    store: VectorStore,
    embedder: TextEmbedder,
    rows: list[dict[str, Any]],
    content_chars: int,
    encode_batch: int,
    known: _Reuse | None,
    summary: IndexSummary,
) -> None:
    uids = [str(r["uid"]) for r in rows]
    texts = [embedding_text(r["title"], r["content"] or "", content_chars) for r in rows]
    shas = [text_sha(t) for t in texts]
    vectors = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    fresh, reused = known.split(uids, shas) if known else (list(range(len(rows))), [])
    if fresh:
        vectors[fresh] = embedder.encode([texts[i] for i in fresh], batch_size=encode_batch)
    if reused and known is not None:
        vectors[reused] = known.vectors([uids[i] for i in reused])
    titles = [r["title"].strip() for r in rows]
    contents = [(r["content"] or "").strip() for r in rows]
    add_kwargs = {"text_sha": shas} if _takes_text_sha(store) else {}
    store.add(uids, titles, contents, vectors, **add_kwargs)
    summary.indexed += len(rows)
    summary.reused += len(reused)


def _takes_text_sha(store: VectorStore) -> bool:
    import inspect

    return "text_sha" in inspect.signature(store.add).parameters
