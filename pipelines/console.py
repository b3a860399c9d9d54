"""Consoles for the CLI: the terminal's width on a terminal; in a pipe or file, wide enough that
rich never cuts or folds a table cell (rich's default off a terminal is 80 columns)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 1000  # tables render at their natural width, which is never this wide


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if is_tty or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, width=width)
