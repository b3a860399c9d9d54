"""Whole-pipeline commands: `run` (local runner), `demo`, `compile` and `submit` (KFP on Kubernetes)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from components.common.errors import InputError
from components.common.settings import get_settings

console = Console(stderr=True)

DEFAULT_COMPILED = Path("prodtune-pipeline.yaml")


def _embedded_env(start: bool) -> dict[str, str]:
    """Env for the steps: the configured servers, or the embedded stack (started if asked)."""
    settings = get_settings()
    if settings.mlflow_tracking_uri and not start:
        return {}
    from pipelines.embedded.stack import EmbeddedStack

    stack = EmbeddedStack(home=settings.home)
    if start:
        stack.start()
    return stack.env()


@contextlib.contextmanager
def _teacher(profile: str, home: Path) -> Iterator[dict[str, str]]:
    """The local profile's teacher: llama.cpp's OpenAI-compatible server on the small model,
    up for the length of the run, unless OPENAI_BASE_URL already points at a teacher."""
    if profile != "local" or os.environ.get("OPENAI_BASE_URL"):
        yield {}
        return
    from pipelines.embedded.teacher import TeacherServer, default_model_path

    log = home / "logs" / "teacher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"starting the local teacher (llama.cpp server on {default_model_path().name}); log: {log}")
    with TeacherServer(default_model_path(), log_path=log) as teacher:
        yield teacher.env()


def _parse_overrides(values: list[str]) -> dict[str, dict]:
    """`--set sampling.n=200` -> {"sampling": {"n": 200}} (values parsed as JSON when they can be)."""
    result: dict[str, dict] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        step, dot, field = key.partition(".")
        if not sep or not dot:
            raise InputError(f"expected STEP.FIELD=VALUE, got {item!r}", field="--set")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        result.setdefault(step, {})[field] = value
    return result


def run(
    input: Annotated[str, typer.Option("--input", help="trn.json (plain/.gz) path or s3:// URI")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="local pipeline root")] = Path(
        "local_outputs"
    ),
    profile: Annotated[str, typer.Option(help="config profile dir under pipelines/configs/")] = "local",
    set_: Annotated[list[str] | None, typer.Option("--set", help="STEP.FIELD=VALUE config override")] = None,
    embedded: Annotated[
        bool, typer.Option(help="start the embedded SeaweedFS + MLflow unless MLFLOW_TRACKING_URI is set")
    ] = True,
) -> None:
    """Run the whole pipeline with the local KFP runner (same components as on Kubernetes)."""
    from pipelines.local_run import run_local

    env = _embedded_env(start=embedded and not get_settings().mlflow_tracking_uri)
    with _teacher(profile, get_settings().home) as teacher_env:
        result = run_local(
            input,
            output_dir,
            profile=profile,
            overrides=_parse_overrides(set_ or []),
            env={**env, **teacher_env},
        )
    _print_result(result, env)


def _print_result(result, env: dict[str, str]) -> None:
    table = Table(title=f"prodtune pipeline run {result.run_id}")
    table.add_column("output")
    table.add_column("where")
    for name, path in result.outputs.items():
        table.add_row(name, str(path))
    tracking = env.get("MLFLOW_TRACKING_URI") or get_settings().mlflow_tracking_uri
    if tracking:
        table.add_row("MLflow", f"{tracking} (experiment {get_settings().mlflow_experiment})")
    console.print(table)


def demo(
    lines: Annotated[int, typer.Option(help="lines of generated trn.json-format sample data")] = 5000,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="local pipeline root")] = Path(
        "local_outputs"
    ),
    input: Annotated[
        str | None, typer.Option("--input", help="use this trn.json instead of generated data")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="end with the API and UI serving the registered models")
    ] = True,
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    ui_port: Annotated[int, typer.Option(help="UI port")] = 8501,
) -> None:
    """The laptop demo: embedded stack, sample data, the whole pipeline locally, then API + UI."""
    from components.prep.sample_data import generate_trn
    from pipelines.local_run import run_local

    settings = get_settings()
    env = _embedded_env(start=True)
    if input is None:
        data = settings.home / "data" / f"trn-sample-{lines}.json.gz"
        if not data.is_file():
            console.print(f"generating {lines} lines of trn.json-format sample data -> {data}")
            generate_trn(data, lines=lines, seed=0)
        input = str(data)
    with _teacher("local", settings.home) as teacher_env:
        result = run_local(input, output_dir, profile="local", env={**env, **teacher_env})
    _print_result(result, env)
    if serve:
        _serve_demo(result, settings.home, port, ui_port)


def _serve_demo(result, home: Path, port: int, ui_port: int) -> None:
    """Index this run's catalogue, then serve the models the run registered (alias champion)."""
    import secrets

    from pipelines.commands.serve import serve as serve_api

    store = result.step_output("index", "store")  # the pipeline's index step built it
    os.environ["PRODTUNE_SERVING_STORE_PATH"] = str(store)
    # Serve what this run registered: `candidate` always points at it, while `champion` moves only
    # when the eval gate passes (a tiny CPU fine-tune may not beat its base). Production serves champion.
    os.environ.setdefault("PRODTUNE_LLM_ALIAS", "candidate")
    key_file = home / "api-key"
    if not os.environ.get("PRODTUNE_API_KEY"):
        if not key_file.is_file():
            key_file.write_text(secrets.token_urlsafe(24))
            key_file.chmod(0o600)
        os.environ["PRODTUNE_API_KEY"] = key_file.read_text().strip()
    console.print(f"API key: in {key_file} (export PRODTUNE_API_KEY=$(cat {key_file})); Ctrl-C stops serving")
    serve_api(host="127.0.0.1", port=port, ui=True, ui_port=ui_port, log_level="warning")


def compile_(
    output: Annotated[Path, typer.Option("--output", help="pipeline package to write")] = DEFAULT_COMPILED,
    profile: Annotated[
        str, typer.Option(help="config profile baked in as parameter defaults")
    ] = "production",
    platform: Annotated[
        Path | None, typer.Option(help="Kubernetes settings YAML (default pipelines/configs/kubernetes.yaml)")
    ] = None,
    pipeline_root: Annotated[
        str | None, typer.Option(help="KFP artifact root, e.g. s3://prodtune/kfp (default: the cluster's)")
    ] = None,
    checkpoint_root: Annotated[
        str, typer.Option(help="S3 prefix fine-tune checkpoints are mirrored to")
    ] = "s3://prodtune/checkpoints",
) -> None:
    """Compile the pipeline for KFP on Kubernetes (GPU affinity, resources, Secrets, retries)."""
    from pipelines.compile import compile_pipeline

    compile_pipeline(
        output,
        profile=profile,
        platform_path=platform,
        pipeline_root=pipeline_root,
        checkpoint_root=checkpoint_root,
    )
    console.print(f"[bold green]compiled[/] {output}")


# `submit` lives in its own functions (and pipelines/submit.py) so the local-run commands above
# and KFP submission change independently.
def submit(
    host: Annotated[str, typer.Option("--host", envvar="KFP_HOST", help="KFP API endpoint")],
    input: Annotated[str, typer.Option("--input", help="s3:// URI of trn.json as the cluster sees it")],
    overlay: Annotated[
        str, typer.Option(help="manifests overlay in use: standalone or multi-user (sets the defaults below)")
    ] = "standalone",
    namespace: Annotated[
        str | None, typer.Option(envvar="KFP_NAMESPACE", help="profile namespace (multi-user)")
    ] = None,
    service_account: Annotated[
        str | None, typer.Option(help="service account of the run's pods (default: the overlay's)")
    ] = None,
    experiment: Annotated[str, typer.Option(help="KFP experiment (created if absent)")] = "prodtune",
    run_name: Annotated[str | None, typer.Option(help="run name")] = None,
    package: Annotated[Path | None, typer.Option(help="compiled package (default: compile now)")] = None,
    profile: Annotated[str, typer.Option(help="config profile when compiling now")] = "production",
    caching: Annotated[
        str, typer.Option(help="auto (per task, as compiled), on or off (every task)")
    ] = "auto",
    pipeline_root: Annotated[str | None, typer.Option(help="KFP artifact root for this run")] = None,
    auth: Annotated[
        str, typer.Option(help="none, bearer (token from KFP_TOKEN or --token-file) or in-cluster")
    ] = "none",
    token_file: Annotated[Path | None, typer.Option(help="file holding the bearer token")] = None,
) -> None:
    """Upload the pipeline (a version per content hash), reuse the experiment, start a run."""
    from pipelines.submit import OVERLAYS, Auth, SubmitError, SubmitRequest

    if overlay not in OVERLAYS:
        raise SubmitError(f"--overlay must be one of {', '.join(OVERLAYS)}, not {overlay!r}")
    defaults = OVERLAYS[overlay]
    request = SubmitRequest(
        host=host,
        package=package or Path("(compiled now)"),
        arguments={"input_uri": input},
        experiment=experiment,
        run_name=run_name,
        namespace=namespace or defaults["namespace"],
        service_account=service_account or defaults["service_account"],
        caching=caching,
        pipeline_root=pipeline_root,
        auth=Auth(mode=auth, token_file=token_file),
    )
    result = _submit(request, compile_profile=None if package else profile)
    typer.echo(json.dumps({**result.as_dict(), "host": host, "experiment": experiment}))


def _submit(request, compile_profile: str | None):
    """Submit `request`, compiling the package first when none was given."""
    import dataclasses
    import tempfile

    from pipelines.submit import submit as submit_request

    if compile_profile is None:
        return submit_request(request)
    from pipelines.compile import compile_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "prodtune-pipeline.yaml", profile=compile_profile)
        return submit_request(dataclasses.replace(request, package=package))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("compile")(compile_)
    app.command("submit")(submit)
