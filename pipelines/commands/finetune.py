"""`prodtune finetune` (one fine-tune from a YAML recipe) and `prodtune assets materialize`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from components.common.config import load_config


def finetune(
    config: Annotated[Path, typer.Option("--config", help="fine-tune recipe (pipelines/configs/*.yaml)")],
    train: Annotated[Path, typer.Option("--train", help="chat JSONL from the synthesis step")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="adapter/, merged/, eval.json, ...")],
    eval_file: Annotated[
        Path | None, typer.Option("--eval", help="held-out chat JSONL (default: split of --train)")
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="override the recipe's length")] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="override the base model dir")
    ] = None,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="ignore checkpoints in output dir")] = False,
) -> None:
    """Fine-tune one model (LoRA), evaluate base vs fine-tuned, write the export step's input dir."""
    from components.finetune.core import FinetuneConfig, run_finetune_tracked

    cfg = load_config(FinetuneConfig, config, {"max_steps": max_steps, "base_model": base_model})
    result = run_finetune_tracked(cfg, train, eval_file, output_dir, resume=not no_resume)
    s = result.summary
    typer.echo(
        json.dumps(
            {
                "output_dir": str(result.output_dir),
                "task": s["task"],
                "backend": s["backend"],
                "steps": s["steps"],
                "resumed_from": s["resumed_from"],
                "final_train_loss": s["train_loss"][-1] if s["train_loss"] else None,
                "eval": {k: result.eval[k] for k in ("base", "finetuned", "n_eval")},
            }
        )
    )


assets = typer.Typer(help="Offline model assets.", no_args_is_help=True)


@assets.command("materialize")
def materialize_cmd(
    gguf: Annotated[
        Path | None, typer.Option("--gguf", help="GGUF file (default: the embedded SmolLM2)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="HF model directory to write")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float16, bfloat16 or float32")] = "float16",
) -> None:
    """Turn a GGUF base model into a plain safetensors directory (once; skips if present)."""
    from components.finetune import materialize as m

    if dtype not in ("float16", "bfloat16", "float32"):
        raise typer.BadParameter("dtype must be float16, bfloat16 or float32", param_hint="--dtype")
    typer.echo(m.materialize(gguf or m.DEFAULT_GGUF, output or m.DEFAULT_OUTPUT, dtype))


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.add_typer(assets, name="assets")
