"""One error type for bad input: the CLI prints it on one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input, located as precisely as we can (file, line, field)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" (field '{self.field}')"
        return f"{where}: {self.message}" if where else self.message
