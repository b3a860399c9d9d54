"""`prodtune services start|stop|status|env`: the embedded SeaweedFS (S3) + MLflow stack.

`eval "$(prodtune services env --show-secrets)"` configures the current shell exactly as a
cluster's env/Secrets configure a pipeline pod.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.console import make_console
from pipelines.embedded.stack import SECRET_ENV_VARS, EmbeddedStack, ServiceError

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="State dir (default: $PRODTUNE_HOME or ./.prodtune)."),
]
S3PortOpt = Annotated[int | None, typer.Option("--s3-port", help="S3 port (default 8333).")]
MlflowPortOpt = Annotated[int | None, typer.Option("--mlflow-port", help="MLflow port (default 5050).")]

err = make_console(stderr=True)


def _fail(exc: ServiceError) -> None:
    err.print(f"[red]prodtune: error:[/red] {exc}", markup=True, highlight=False)
    raise typer.Exit(1)


def start(home: HomeOpt = None, s3_port: S3PortOpt = None, mlflow_port: MlflowPortOpt = None) -> None:
    """Start SeaweedFS and MLflow (only what is not already running)."""
    stack = EmbeddedStack.load(home, s3_port=s3_port, mlflow_port=mlflow_port)
    try:
        with err.status("starting SeaweedFS and MLflow (MLflow takes 10-60 s on a busy machine)..."):
            started = stack.start()
    except ServiceError as exc:
        _fail(exc)
        return
    for name, now in started.items():
        err.print(f"{name}: {'started' if now else 'already running'}")
    _print_status(stack.status())
    err.print(
        "prodtune models/promote/serve/route/index/export use this stack by themselves; "
        'for other clients: eval "$(prodtune services env --show-secrets)"'
    )


def stop(home: HomeOpt = None) -> None:
    """Stop both services (MLflow first) and remove their pid files."""
    stack = EmbeddedStack.load(home)
    try:
        with err.status("stopping..."):
            stopped = stack.stop()
    except ServiceError as exc:
        _fail(exc)
        return
    for name, was_running in stopped.items():
        err.print(f"{name}: {'stopped' if was_running else 'was not running'}")


def status(
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show pids, URLs and health; exit status 1 unless both services are healthy."""
    info = EmbeddedStack.load(home).status()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        _print_status(info, make_console())
    if not all(s["healthy"] for s in info["services"].values()):
        raise typer.Exit(1)


def env(
    home: HomeOpt = None,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Also print the S3 keys (for eval in your own shell).")
    ] = False,
) -> None:
    """Print `export NAME=value` lines for clients of the stack."""
    values = EmbeddedStack.load(home).env()
    for name, value in values.items():
        if name in SECRET_ENV_VARS and not show_secrets:
            continue
        typer.echo(f"export {name}={shlex.quote(value)}")
    if not show_secrets:
        err.print(f"# {', '.join(sorted(SECRET_ENV_VARS))} omitted: add --show-secrets")


def _print_status(info: dict, console: Console = err) -> None:
    table = Table(title=f"embedded services ({info['home']})")
    for column in ("service", "state", "pid", "url", "log"):
        table.add_column(column)
    for name, s in info["services"].items():
        state = (
            "[green]healthy[/green]"
            if s["healthy"]
            else ("[yellow]running, not healthy[/yellow]" if s["running"] else "[red]stopped[/red]")
        )
        table.add_row(name, state, str(s["pid"] or "-"), s["url"], s["log"])
    console.print(table)


def register(app: typer.Typer) -> None:
    services = typer.Typer(
        help="Embedded SeaweedFS (S3) + MLflow server for local runs.",
        no_args_is_help=True,
    )
    services.command("start")(start)
    services.command("stop")(stop)
    services.command("status")(status)
    services.command("env")(env)
    app.add_typer(services, name="services")
