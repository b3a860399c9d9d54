"""`prodtune sample`: seeded random sample of the processed catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from components.common.config import default_config_path, load_config
from components.sampling.core import SamplingConfig, run_sampling_tracked


def sample(
    input: Annotated[Path, typer.Option("--input", help="trn-processed.parquet/.csv or prep's output dir")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="where data-<n>.csv/.parquet go")],
    config: Annotated[
        Path | None, typer.Option(help="YAML config (default pipelines/configs/sampling.yaml)")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="rows to sample")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    eval_fraction: Annotated[float | None, typer.Option(help="share held out for eval")] = None,
) -> None:
    """Sample N rows (seeded) from the processed catalogue and split them into train/eval."""
    cfg = load_config(
        SamplingConfig,
        config or default_config_path("sampling"),
        {"n": n, "seed": seed, "eval_fraction": eval_fraction},
    )
    summary = run_sampling_tracked(input, output_dir, cfg)
    Console(stderr=True).print(
        f"[bold green]sampled[/] {summary.sampled} of {summary.population} rows "
        f"(train {summary.train}, eval {summary.eval}, seed {summary.seed}) -> {output_dir / summary.csv}"
    )


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
