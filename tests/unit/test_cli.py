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
