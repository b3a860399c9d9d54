"""`prodtune prep` (clean and filter trn.json) and `prodtune gen-data` (synthetic trn.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def prep(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="trn.json (JSON lines, plain or gzip)")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="where the outputs go")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config (default pipelines/configs/prep.yaml)")
    ] = None,
    min_content_chars: Annotated[
        int | None, typer.Option("--min-content-chars", help="override min_content_chars (after cleaning)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Clean and filter trn.json into trn-processed.{parquet,csv}, quarantine.jsonl, prep-summary.json."""
    from components.common.config import default_config_path, load_config
    from components.prep.core import PrepConfig, run_prep_tracked

    cfg = load_config(
        PrepConfig, config or default_config_path("prep"), {"min_content_chars": min_content_chars}
    )
    summary = run_prep_tracked(input_path, output_dir, cfg, progress=progress)

    table = Table(title=f"prep: {input_path} -> {output_dir}")
    table.add_column("count")
    table.add_column("rows", justify="right")
    table.add_row("lines_read", f"{summary.lines_read:,}")
    table.add_row("kept", f"{summary.kept:,}", style="green")
    for reason, n in summary.dropped.items():
        table.add_row(f"dropped: {reason}", f"{n:,}", style="yellow")
    console.print(table)
    console.print(f"{summary.rows_per_s:,.0f} lines/s in {summary.seconds:.1f} s")


def gen_data(
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write (.gz for gzip)")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="number of lines")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same bytes)")] = 0,
) -> None:
    """Write a synthetic trn.json with the real file's shapes, edge cases and damaged lines."""
    from components.prep.sample_data import generate_trn

    counts = generate_trn(output, lines, seed=seed)
    table = Table(title=f"gen-data: {lines:,} lines -> {output}")
    table.add_column("kind")
    table.add_column("lines", justify="right")
    for kind, n in sorted(counts.items()):
        table.add_row(kind, f"{n:,}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("prep")(prep)
    app.command("gen-data")(gen_data)
