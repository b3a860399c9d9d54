"""`prodtune export`, `prodtune promote`, `prodtune models` (components/export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

EXIT_GATE_FAILED = 1


def export(
    model_dir: Annotated[
        Path, typer.Option("--model-dir", help="fine-tune output (merged/, adapter/, summaries)")
    ],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="where GGUF files, Modelfile and summary go")
    ],
    config: Annotated[
        Path | None, typer.Option(help="step config (default pipelines/configs/export.yaml)")
    ] = None,
    quant: Annotated[
        list[str] | None, typer.Option("--quant", help="quant level (repeatable; overrides config)")
    ] = None,
    serve_level: Annotated[str | None, typer.Option(help="level the Modelfile and eval gate use")] = None,
    margin: Annotated[
        float | None, typer.Option(help="promotion gate margin on the task metric (ROUGE-L / token F1)")
    ] = None,
    publish: Annotated[
        bool | None, typer.Option(help="upload to S3 and register in MLflow if configured")
    ] = None,
) -> None:
    """Convert to GGUF (f16 + quants), write the Modelfile, run the fidelity and eval gates, register."""
    from components.common.config import default_config_path, load_config
    from components.export.core import ExportConfig, FidelityError, run_export
    from components.export.gguf import ExportError

    cfg = load_config(
        ExportConfig,
        config or default_config_path("export"),
        {"quant_levels": quant or None, "serve_level": serve_level, "publish": publish},
    )
    if margin is not None:
        cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"margin": margin})})
    try:
        summary = run_export(model_dir, output_dir, cfg, echo=lambda s: typer.echo(s, err=True))
    except FidelityError as exc:
        typer.echo(f"prodtune: fidelity gate failed: {exc}", err=True)
        raise typer.Exit(EXIT_GATE_FAILED) from None
    except ExportError as exc:
        typer.echo(f"prodtune: export failed: {exc}", err=True)
        raise typer.Exit(EXIT_GATE_FAILED) from None
    typer.echo(json.dumps(_short(summary), ensure_ascii=False))


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    registry = summary.get("registry", {})
    return {
        "task": summary["task"],
        "files": summary["files"],
        "levels": {
            k: {m: round(v, 4) if isinstance(v, float) else v for m, v in row.items() if m != "samples"}
            for k, row in summary["levels"].items()
        },
        "fidelity": summary["fidelity"]["passed"],
        "eval_gate": {k: summary["eval_gate"].get(k) for k in ("passed", "improvement", "reason")},
        "registry": {
            k: registry.get(k) for k in ("model_name", "version", "aliases", "skipped") if k in registry
        },
    }


def promote(
    task: Annotated[str, typer.Option(help="describer or qa")],
    version: Annotated[str, typer.Option(help="model version to point the alias at")],
    alias: Annotated[str, typer.Option(help="alias to move")] = "champion",
    force: Annotated[bool, typer.Option(help="allow champion on a version whose eval gate failed")] = False,
) -> None:
    """Move a registry alias (champion refuses gate-failed versions unless --force)."""
    from components.export.registry import promote as do_promote

    typer.echo(json.dumps(do_promote(task, version, alias, force=force)))


def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List registered prodtune models (versions, aliases, gate, GGUF URI); `models stage` copies base weights."""
    if ctx.invoked_subcommand is not None:
        return
    from components.export.registry import list_models

    rows = list_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from pipelines.console import make_console

    table = Table("model", "version", "aliases", "gate", "level", "gguf", "sha256")
    for r in rows:
        table.add_row(
            r["model"],
            r["version"],
            ",".join(r["aliases"]),
            str(r["gate_passed"]),
            str(r["serve_level"]),
            str(r["gguf_uri"]),
            (r["gguf_sha256"] or "")[:12],
        )
    make_console().print(table)


def stage(
    base: Annotated[str, typer.Option("--base", help="local model dir or HF repo id[@revision]")],
    to: Annotated[str, typer.Option("--to", help="s3://bucket/prefix/ to copy the weights to")],
) -> None:
    """Copy base weights into S3 with a sha256 manifest, for clusters without internet.

    Then set `base_model: s3://bucket/prefix/` in the fine-tune config: the pod mirrors it once.
    """
    from components.common.base_weights import stage as do_stage

    result = do_stage(base, to)
    typer.echo(
        json.dumps(
            {
                "uri": result["uri"],
                "source": result["source"],
                "revision": result["revision"],
                "files": len(result["files"]),
                "bytes": sum(f["size"] for f in result["files"].values()),
            }
        )
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("promote")(promote)
    group = typer.Typer(invoke_without_command=True, no_args_is_help=False)
    group.callback()(models)
    group.command("stage")(stage)
    app.add_typer(group, name="models")
