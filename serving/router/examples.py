"""Labelled router examples, JSON lines:
`{"text": ..., "route": "describe"|"answer", "lang": "en"|"pt", "kind": ...}`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from components.common.errors import InputError

ROUTES = ("describe", "answer")


@dataclass(frozen=True)
class Example:
    text: str
    route: str
    lang: str = ""
    kind: str = ""


def load_examples(path: str | Path) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise InputError("labelled examples file not found", path=path)
    examples = []
    with path.open(encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=no) from None
            if not isinstance(row, dict) or not str(row.get("text", "")).strip():
                raise InputError("missing text", path=path, line=no, field="text")
            if row.get("route") not in ROUTES:
                raise InputError(f"route must be one of {ROUTES}", path=path, line=no, field="route")
            examples.append(Example(row["text"], row["route"], row.get("lang", ""), row.get("kind", "")))
    return examples


def normalise(text: str) -> str:
    """The key used to check that training and evaluation sets do not share an input."""
    return re.sub(r"\s+", " ", text.casefold()).strip(" ?.!")
