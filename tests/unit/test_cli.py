"""The `prodtune` CLI: every subcommand has --help; bad input is one line on stderr and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipelines import cli

cli._register()
runner = CliRunner()


def _commands(group=cli.app, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    for name, command in click_group.commands.items():
        yield (*prefix, name)
        for sub in getattr(command, "commands", {}):
            yield (*prefix, name, sub)


def test_expected_commands_exist():
    names = {c[0] for c in _commands()}
    assert {"prep", "sample", "run", "compile", "submit", "services"} <= names


@pytest.mark.parametrize("command", sorted(set(_commands())))
def test_every_subcommand_has_help(command):
    result = runner.invoke(cli.app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_input_error_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "missing.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "sample",
            "--input",
            str(missing),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prodtune: error:") and str(missing) in lines[0]


def test_the_cli_and_the_steps_it_starts_write_bytecode(tmp_path):
    # Where PYTHONDONTWRITEBYTECODE is set, every step process used to compile its stack from source
    # again; the CLI lifts it for itself and its children (kfp.local tasks, servers), which write
    # the bytecode of what they import.
    import os

    (tmp_path / "probe_mod.py").write_text("X = 1\n")
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import os, subprocess, sys\n"
        "import pipelines.cli\n"
        "subprocess.run([sys.executable, '-c', 'import probe_mod'], check=True, cwd=sys.argv[1])\n"
        "print(os.environ.get('PYTHONDONTWRITEBYTECODE'), sys.dont_write_bytecode)\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, str(parent), str(tmp_path)], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "False"]
    assert list((tmp_path / "__pycache__").glob("probe_mod.*.pyc"))
