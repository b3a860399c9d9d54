"""`prodtune synthesize`: Q&A pairs from an OpenAI-compatible teacher (components/synthesis)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from components.common.errors import InputError


def synthesize(
    input: Annotated[Path, typer.Option("--input", help="data-<N>.csv/.parquet, or its directory")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="where the datasets and summary go")],
    config: Annotated[Path | None, typer.Option(help="default pipelines/configs/synthesis.yaml")] = None,
    model: Annotated[str | None, typer.Option(help="teacher model id (overrides config)")] = None,
    base_url: Annotated[str | None, typer.Option(help="overrides config and OPENAI_BASE_URL")] = None,
    concurrency: Annotated[int | None, typer.Option(help="requests in flight")] = None,
    pairs_per_product: Annotated[int | None, typer.Option("--pairs", help="K pairs per product")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="reply token limit")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="reply cache (resume / free reruns)")] = None,
    local_teacher: Annotated[
        bool, typer.Option("--local-teacher", help="start the embedded llama.cpp teacher for this run")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Generate grounded Q&A pairs per product; write dados-fine-tunning.jsonl, splits and a summary."""
    from components.common.config import default_config_path, load_config
    from components.synthesis.client import TeacherAuthError
    from components.synthesis.core import SynthesisConfig, run_synthesis

    overrides: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "concurrency": concurrency,
        "pairs_per_product": pairs_per_product,
        "max_tokens": max_tokens,
        "cache_dir": cache_dir,
    }
    with contextlib.ExitStack() as stack:
        environ = dict(os.environ)
        if local_teacher:
            environ, overrides = _start_local_teacher(stack, environ, overrides, output_dir)
        cfg = load_config(SynthesisConfig, config or default_config_path("synthesis"), overrides)
        try:
            summary = run_synthesis(cfg, input, output_dir, environ=environ, progress=progress)
        except TeacherAuthError as exc:
            raise InputError(str(exc), field=cfg.api_key_env) from None
    typer.echo(json.dumps(summary, ensure_ascii=False))


def _start_local_teacher(
    stack: contextlib.ExitStack, environ: dict[str, str], overrides: dict[str, Any], output_dir: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    from pipelines.embedded.teacher import LOCAL_TEACHER_CONFIG, TeacherServer, default_model_path

    output_dir.mkdir(parents=True, exist_ok=True)
    teacher = stack.enter_context(TeacherServer(default_model_path(), log_path=output_dir / "teacher.log"))
    environ = {**environ, **teacher.env()}
    # The local model is slow and weak: its defaults apply unless the command line says otherwise.
    defaults = {**LOCAL_TEACHER_CONFIG, "base_url": teacher.base_url}
    overrides = {**overrides, **{k: v for k, v in defaults.items() if overrides.get(k) is None}}
    return environ, overrides


def register(app: typer.Typer) -> None:
    app.command("synthesize")(synthesize)
