"""`prodtune docs`: rewrite the generated sections of docs/dataset.md, finetuning.md, architecture.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def docs(
    from_run: Annotated[
        Path | None,
        typer.Option("--from-run", help="pipeline root or run dir to snapshot into docs/runs/latest first"),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="only report stale sections (exit 1 if any)")
    ] = False,
) -> None:
    """Regenerate the documents' generated sections from the run snapshot and the YAML recipes."""
    from pipelines import docs as gen

    try:
        if from_run is not None:
            typer.echo(f"snapshot: {gen.snapshot_run(from_run)}", err=True)
        if check:
            stale = gen.stale()
            for path in stale:
                typer.echo(f"stale: {path} (run `prodtune docs`)", err=True)
            raise typer.Exit(1 if stale else 0)
        for path in gen.write_all():
            typer.echo(f"rewrote {path}", err=True)
    except gen.DocsError as exc:
        typer.echo(f"prodtune: docs: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("docs")(docs)
