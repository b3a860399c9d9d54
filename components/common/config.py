"""Typed step configs: YAML recipes validated into pydantic models with clear errors.

Every step owns a `pydantic.BaseModel` config; `load_config(Model, path, overrides)` reads
`pipelines/configs/<step>.yaml`, applies CLI overrides and reports errors with the file and field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from components.common.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "configs"

M = TypeVar("M", bound=BaseModel)


class StepConfig(BaseModel):
    """Base for step configs: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in strings (recursively), so one YAML serves
    a laptop and a cluster; an unset variable without a default is an error, not ''."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return os.path.expanduser(default)
            raise InputError(f"environment variable {name} is not set", field=name)

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def load_config(model: type[M], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> M:
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("config file not found", path=path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise InputError(f"invalid YAML: {exc}", path=path, line=mark.line + 1 if mark else None) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError("config must be a mapping of keys to values", path=path)
        try:
            data = expand_env(loaded or {})
        except InputError as exc:
            raise InputError(exc.message, path=path, field=exc.field) from None
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{first['msg']} ({len(exc.errors())} error(s))", path=path, field=field) from exc


def default_config_path(step: str) -> Path:
    return CONFIG_DIR / f"{step}.yaml"
