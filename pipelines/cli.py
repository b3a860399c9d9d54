"""The `prodtune` command line: one subcommand per pipeline step, plus orchestration.

Each area registers its commands from `pipelines/commands/<area>.py`, so this file stays a table.
Bad input (`InputError`) becomes a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys


def _write_bytecode() -> None:
    # Every step runs in a process of its own (kfp.local's tasks, the teacher, MLflow). Where
    # PYTHONDONTWRITEBYTECODE is set (this kind of machine sets it) none of them ever wrote the
    # bytecode it compiled, so each one compiled torch, transformers and the rest from source again:
    # the fine-tune step's imports took 23.1 s against 9.8 (docs/benchmarks.md). The venv is
    # prodtune's own, so this process and those it starts write what they import, once. (Setup used
    # to compile the whole venv instead: 26,631 modules, most of which no step imports, and 110-140 s
    # of a cold 2-core setup.) First thing, before the imports below, so they are written too.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


_write_bytecode()

import typer  # noqa: E402

from components.common.errors import InputError  # noqa: E402

app = typer.Typer(
    name="prodtune",
    help="Kubeflow-native MLOps pipeline: product catalogue to two fine-tuned, served LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INPUT_ERROR = 2
# Subcommands that talk to MLflow/S3: after `prodtune services start` or a demo they find the
# running embedded stack by themselves (explicit env wins; see pipelines/embedded/stack.py).
USES_STACK = frozenset({"models", "promote", "serve", "route", "index", "export"})


# One module per area, in the order their commands appear in `prodtune --help`.
COMMAND_MODULES = (
    "prep",
    "sampling",
    "synthesis",
    "finetune",
    "export",
    "orchestrate",
    "route",
    "serve",
    "services",
    "docs",
)


def _register() -> None:
    # Imported here so each area owns its own module and `--help` lists them in pipeline order.
    import importlib

    if getattr(app, "_prodtune_registered", False):
        return
    for name in COMMAND_MODULES:
        importlib.import_module(f"pipelines.commands.{name}").register(app)
    app._prodtune_registered = True  # type: ignore[attr-defined]


def _exit_on_sigterm() -> None:
    # SIGTERM (kill, Kubernetes pod stop) becomes SystemExit, so `with` blocks run their cleanup:
    # the local teacher server and other child processes are stopped, not orphaned.
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _subcommand(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _find_stack(argv: list[str]) -> None:
    if _subcommand(argv) not in USES_STACK:
        return
    from pipelines.embedded.stack import use_running_stack

    added = use_running_stack(os.environ)
    if added.get("MLFLOW_TRACKING_URI"):
        print(f"prodtune: using the embedded stack (MLflow {added['MLFLOW_TRACKING_URI']})", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    _exit_on_sigterm()
    _register()
    _find_stack(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, standalone_mode=True)
    except InputError as exc:
        print(f"prodtune: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_INPUT_ERROR)


if __name__ == "__main__":
    main()
