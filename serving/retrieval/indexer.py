"""Index the processed catalogue (`trn-processed.parquet`: uid, title, content) into a vector store.

Rows are read in batches (the catalogue is ~1.2M rows: never all text in memory at once beyond what
the store keeps), embedded as "title. content[:N]" and added batch by batch with a progress bar.
Rows with an empty title are skipped and counted: nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from tqdm import tqdm

from components.common.errors import InputError
from serving.retrieval.base import VectorStore
from serving.retrieval.embedder import TextEmbedder

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("uid", "title", "content")


@dataclass
class IndexSummary:
    rows_read: int = 0
    indexed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"rows_read": self.rows_read, "indexed": self.indexed, "skipped": dict(self.skipped)}


def embedding_text(title: str, content: str, max_chars: int) -> str:
    """What is embedded for a product; the same layout at index time and in tests."""
    title = title.strip()
    content = (content or "").strip()[:max_chars]
    return f"{title}. {content}" if content else title


def index_catalogue(
    parquet_path: str | Path,
    store: VectorStore,
    embedder: TextEmbedder,
    *,
    batch_size: int = 256,
    content_chars: int = 500,
    limit: int | None = None,
    progress: bool = True,
) -> IndexSummary:
    path = Path(parquet_path)
    if not path.is_file():
        raise InputError("catalogue parquet not found", path=path)
    pf = pq.ParquetFile(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"missing column(s) {missing}", path=path, field=missing[0])
    total = pf.metadata.num_rows if limit is None else min(limit, pf.metadata.num_rows)
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
            texts = [embedding_text(r["title"], r["content"] or "", content_chars) for r in keep]
            vectors = embedder.encode(texts, batch_size=min(batch_size, 128))
            store.add(
                [str(r["uid"]) for r in keep],
                [r["title"].strip() for r in keep],
                [(r["content"] or "").strip() for r in keep],
                vectors,
            )
            summary.indexed += len(keep)
        bar.update(len(rows))
        if summary.rows_read >= total:
            break
    bar.close()
    assert summary.rows_read == summary.indexed + sum(summary.skipped.values())
    log.info("indexed %s", summary.as_dict())
    return summary
