"""Whole-pipeline commands: `run` (local runner), `demo`, `compile` and `submit` (KFP on Kubernetes)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from components.common.errors import InputError
from components.common.settings import get_settings
from pipelines.console import make_console

console = make_console(stderr=True)

DEFAULT_COMPILED = Path("prodtune-pipeline.yaml")


def _embedded_env(start: bool) -> dict[str, str]:
    """Env for the steps: the configured servers, or the embedded stack (started if asked).

    The stack is loaded from the state dir, so one already running (on its own ports) is reused."""
    settings = get_settings()
    if settings.mlflow_tracking_uri and not start:
        return {}
    from pipelines.embedded.stack import EmbeddedStack

    stack = EmbeddedStack.load(settings.home)
    if start:
        with console.status("starting the embedded SeaweedFS (S3) + MLflow (10-60 s on a busy machine)"):
            started = stack.start()
        now = [name for name, yes in started.items() if yes]
        console.print(
            f"embedded stack: {', '.join(now) + ' started' if now else 'already running'} "
            f"(MLflow {stack.tracking_uri}, S3 {stack.s3_endpoint_url})"
        )
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


VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="also stream every step's log (always in <output-dir>/logs/)")
]


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
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline with the local KFP runner (same components as on Kubernetes)."""
    env = _embedded_env(start=embedded and not get_settings().mlflow_tracking_uri)
    _run_pipeline(input, output_dir, profile, _parse_overrides(set_ or []), env, verbose)


def _run_pipeline(
    input: str, output_dir: Path, profile: str, overrides: dict[str, dict], env: dict[str, str], verbose: bool
):
    """The pipeline with one line per step, then the summary; exit 1 with the failing step's log."""
    from pipelines.local_run import PipelineFailed, run_local
    from pipelines.run_view import StepView

    started = time.monotonic()
    view = StepView(console, verbose=verbose)
    try:
        with _teacher(profile, get_settings().home) as teacher_env:
            result = run_local(
                input, output_dir, profile=profile, overrides=overrides, env={**env, **teacher_env}, view=view
            )
    except PipelineFailed as exc:
        console.print(f"[bold red]prodtune: {exc}[/]")
        raise typer.Exit(1) from None
    _print_result(result, env, time.monotonic() - started)
    return result


def _print_result(result, env: dict[str, str], seconds: float) -> None:
    from pipelines.run_summary import load_task_results, print_summary

    urls = {}
    tracking = env.get("MLFLOW_TRACKING_URI") or get_settings().mlflow_tracking_uri
    if tracking:
        urls["MLflow"] = f"{tracking}  (experiment {get_settings().mlflow_experiment})"
    if env.get("PRODTUNE_S3_ENDPOINT_URL"):
        urls["S3"] = f"{env['PRODTUNE_S3_ENDPOINT_URL']}  (bucket {env.get('PRODTUNE_S3_BUCKET', '')})"
    urls["logs"] = str(result.log_dir)
    print_summary(console, load_task_results(result.outputs), urls, result.run_id, seconds)


def _sample_data(home: Path, lines: int) -> Path:
    """Generated trn.json-format data, cached per generator version (a new generator, new file)."""
    import hashlib

    from components.prep import sample_data

    sources = sorted(Path(sample_data.__file__).parent.glob("sample_*.py"))  # the generator's modules
    version = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:8]
    data = home / "data" / f"trn-sample-{lines}-{version}.json.gz"
    if not data.is_file():
        with console.status(f"generating {lines} lines of trn.json-format sample data -> {data}"):
            sample_data.generate_trn(data, lines=lines, seed=0)
        console.print(f"generated {lines} lines of trn.json-format sample data -> {data}")
    return data


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
    verbose: VerboseOpt = False,
) -> None:
    """The laptop demo: embedded stack, sample data, the whole pipeline locally, then API + UI."""
    settings = get_settings()
    env = _embedded_env(start=True)
    source = input or str(_sample_data(settings.home, lines))
    # The index build is kept in the state dir: a later demo on the same catalogue copies it
    # instead of embedding again (each kfp.local run has new output dirs).
    overrides = {"index": {"cache_dir": str(settings.home / "index-cache")}}
    result = _run_pipeline(source, output_dir, "local", overrides, env, verbose)
    _index_demo(result, settings.home)
    if serve:
        _serve_demo(settings.home, port, ui_port)


def _index_demo(result, home: Path) -> None:
    """Record what the demo serves (later `prodtune serve` reuses it): the store the pipeline's
    index step built from this run's catalogue, and the alias this run registered."""
    from pipelines.embedded.stack import save_serving

    store = result.step_output("index", "store")
    os.environ["PRODTUNE_SERVING_STORE_PATH"] = str(store)
    # Serve what this run registered: `candidate` always points at it, while `champion` moves only
    # when the eval gate passes (a tiny CPU fine-tune may not beat its base). Production serves champion.
    os.environ.setdefault("PRODTUNE_LLM_ALIAS", "candidate")
    alias = os.environ["PRODTUNE_LLM_ALIAS"]
    save_serving(home, {"PRODTUNE_LLM_ALIAS": alias, "PRODTUNE_SERVING_STORE_PATH": str(store)})


def _serve_demo(home: Path, port: int, ui_port: int) -> None:
    """Serve the models the run registered (alias as recorded by _index_demo), API + UI."""
    from pipelines.commands.serve import serve as serve_api

    console.print(
        "serving; Ctrl-C stops the API and UI (the embedded stack keeps running: `prodtune services stop`)"
    )
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
