"""Typed step configs: YAML recipes validated into pydantic models with clear errors.

Every step owns a `pydantic.BaseModel` config; `load_config(Model, path, overrides)` reads
`pipelines/configs/<step>.yaml`, applies CLI overrides and reports errors with the file and field.

`${VAR}` / `${VAR:-default}` / `${VAR-default}` are expanded when a config is *validated*, in the
process that validates it: the CLI on a laptop, or the component inside a Kubernetes pod. A compiled
pipeline therefore carries the YAML unexpanded (`runtime_config_json`), so no path or variable of
the compiling machine ever reaches the package.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from components.common.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "configs"

M = TypeVar("M", bound=BaseModel)

# ${NAME}, ${NAME:-default} (default when unset OR empty, as in the shell), ${NAME-default} (when unset)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def expand_env(
    value: Any,
    environ: Mapping[str, str] | None = None,
    *,
    missing: Literal["error", "keep"] = "error",
) -> Any:
    """Expand `${VAR}`, `${VAR:-default}` and `${VAR-default}` in strings (recursively), as the shell does.

    An unset variable without a default is an error, not '' (`missing="keep"` leaves it as written,
    for checks made where the variable is not meant to exist, e.g. at compile time). A `~` at the
    start of a default is the home directory of the process that expands it.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, op, default = m.group(1), m.group(2), m.group(3)
            current = env.get(name)
            if op == ":-" and current:  # set and non-empty
                return current
            if op == "-" and current is not None:  # set, possibly empty
                return current
            if op is None and current is not None:
                return current
            if op is not None:
                return os.path.expanduser(default)
            if missing == "keep":
                return m.group(0)
            raise InputError(f"environment variable {name} is not set", field=name)

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, missing=missing) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, missing=missing) for v in value]
    return value


class StepConfig(BaseModel):
    """Base for step configs: unknown keys are errors (typos must not pass silently).

    Environment references are expanded at validation time (see the module docstring); a
    validation `context` of `{"environ": {...}, "missing": "keep"}` expands against that mapping.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _expand_env(cls, data: Any, info: ValidationInfo) -> Any:
        ctx = info.context or {}
        return expand_env(data, ctx.get("environ"), missing=ctx.get("missing", "error"))


def read_config_data(path: str | Path | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML mapping as written (nothing expanded) with non-None overrides applied."""
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
        data = dict(loaded or {})
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return data


def validate_config(
    model: type[M], data: dict[str, Any], path: str | Path | None = None, context: dict | None = None
) -> M:
    """`model.model_validate(data)` with errors as one-line InputErrors naming file and field."""
    try:
        return model.model_validate(data, context=context)
    except InputError as exc:  # an unset ${VAR}
        raise InputError(exc.message, path=path, field=exc.field) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{first['msg']} ({len(exc.errors())} error(s))", path=path, field=field) from exc


def load_config(model: type[M], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> M:
    """Read, override, expand (in this process's environment) and validate a step config."""
    return validate_config(model, read_config_data(path, overrides), path)


def runtime_config_json(
    model: type[BaseModel], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> str:
    """The config as JSON with `${...}` left for the step's own process to expand.

    It is validated here against an empty environment (defaults only, unset variables kept as
    written), so a typo still fails at compile time, but nothing of this machine is returned.
    """
    data = read_config_data(path, overrides)
    validate_config(model, data, path, context={"environ": {}, "missing": "keep"})
    return json.dumps(data, sort_keys=True, default=str)


def default_config_path(step: str) -> Path:
    return CONFIG_DIR / f"{step}.yaml"
