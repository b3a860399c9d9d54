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
        Path | None, typer.Option(help="Store directory (default: PRODTUNE_SERVING_STORE_PATH).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="embedded or weaviate (default: the config's).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML config (default pipelines/configs/local/index.yaml).")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="torch, torch-bf16, onnx or onnx-int8 (default: the config's).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Index only the first N rows.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Rows read (and length-sorted) at once.")
    ] = None,
    ann: Annotated[
        bool | None, typer.Option(help="Build the HNSW index (default: above the config's ann_min_rows).")
    ] = None,
) -> None:
    """Embed title + description of every product and store the vectors; prints a JSON summary.

    The same code as the pipeline's index step (components/index); a rerun on an unchanged
    catalogue embeds nothing, and unchanged rows of a changed one keep their vectors."""
    from components.common.config import CONFIG_DIR, load_config
    from components.common.errors import InputError
    from components.index.core import IndexConfig, run_index
    from serving.config import ServingSettings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if backend not in (None, "embedded", "weaviate"):
        raise InputError("backend must be 'embedded' or 'weaviate'", field="backend")
    settings = ServingSettings()
    overrides = {
        "backend": backend,
        "engine": engine,
        "limit": limit,
        "batch_size": batch_size,
        "ann_min_rows": None if ann is None else (0 if ann else 2**62),
        "model_path": str(settings.embedding_model_path),
        "content_chars": settings.index_content_chars,
        "collection": settings.weaviate_collection,
    }
    cfg = load_config(IndexConfig, config or CONFIG_DIR / "local" / "index.yaml", overrides)
    summary = run_index(catalogue, out or settings.store_path, cfg)
    typer.echo(json.dumps({**summary, "store": str(out or settings.store_path)}))


def register(app: typer.Typer) -> None:
    app.command("route")(route)
    app.command("index")(index)
