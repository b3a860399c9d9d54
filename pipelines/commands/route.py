"""`prodtune route TEXT` (which model would handle TEXT) and `prodtune index` (build the vector store)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer


def route(
    text: Annotated[str, typer.Argument(help="A product title or a question, in Portuguese or English.")],
    train_path: Annotated[
        Path | None, typer.Option(help="Labelled examples the router head is trained from.")
    ] = None,
) -> None:
    """Print one JSON object {"route", "confidence", "reason"} for TEXT (logs go to stderr)."""
    from serving.config import ServingSettings
    from serving.router.classifier import RouterClassifier

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = ServingSettings()
    # No LLM fallback here: below the confidence threshold the reason says it is the head's best guess.
    classifier = RouterClassifier.from_path(
        train_path or settings.router_train_path, fallback_threshold=settings.router_fallback_threshold
    )
    typer.echo(json.dumps(classifier.classify(text).as_dict(), ensure_ascii=False))


def index(
    catalogue: Annotated[Path, typer.Argument(help="trn-processed.parquet from prep (uid, title, content).")],
    out: Annotated[
        Path | None, typer.Option(help="Embedded store directory (default: PRODTUNE_SERVING_STORE_PATH).")
    ] = None,
    backend: Annotated[str, typer.Option(help="embedded or weaviate.")] = "embedded",
    limit: Annotated[int | None, typer.Option(help="Index only the first N rows.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    ivf: Annotated[
        bool | None, typer.Option(help="Build an IVF index (default: when more than 50,000 rows).")
    ] = None,
) -> None:
    """Embed title + description of every product and store the vectors; prints a JSON summary."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    summary = build_index(catalogue, out, backend=backend, limit=limit, batch_size=batch_size, ivf=ivf)
    typer.echo(json.dumps(summary))


def build_index(
    catalogue: Path,
    out: Path | None = None,
    *,
    backend: str = "embedded",
    limit: int | None = None,
    batch_size: int = 256,
    ivf: bool | None = None,
) -> dict:
    """Embed and store the catalogue; returns the summary `prodtune index` prints."""
    from components.common.errors import InputError
    from serving.config import ServingSettings
    from serving.retrieval.embedded import EmbeddedStore
    from serving.retrieval.embedder import SentenceEmbedder
    from serving.retrieval.indexer import index_catalogue

    if backend not in ("embedded", "weaviate"):
        raise InputError("backend must be 'embedded' or 'weaviate'", field="backend")
    settings = ServingSettings()
    embedder = SentenceEmbedder(settings.embedding_model_path)
    kwargs = {
        "batch_size": batch_size,
        "content_chars": settings.index_content_chars,
        "limit": limit,
        "progress": sys.stderr.isatty(),  # a bar for people; nothing in logs and pipes
    }
    if backend == "weaviate":
        from serving.retrieval.weaviate_store import WeaviateStore, connect_weaviate

        with connect_weaviate(settings) as client:
            summary = index_catalogue(
                catalogue, WeaviateStore(client, settings.weaviate_collection), embedder, **kwargs
            )
        return {**summary.as_dict(), "backend": "weaviate"}
    store = EmbeddedStore(embedder.dim, nprobe=settings.ivf_nprobe)
    summary = index_catalogue(catalogue, store, embedder, **kwargs)
    if ivf if ivf is not None else store.count() > 50_000:
        store.build_index(progress=True)
    target = store.save(out or settings.store_path)
    return {**summary.as_dict(), "backend": "embedded", "store": str(target)}


def register(app: typer.Typer) -> None:
    app.command("route")(route)
    app.command("index")(index)
