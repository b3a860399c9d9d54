"""Where prodtune keeps what it can rebuild: `$PRODTUNE_CACHE`, default `~/.cache/prodtune`.

The images bake read-only assets into `PRODTUNE_CACHE=/opt/prodtune/cache` (the GGUF converter) and
run with a read-only root filesystem, writing only to `$HOME` and `/tmp`; so a cache that steps
write to falls back to `~/.cache/prodtune/<name>` when the configured root cannot be written.

`JsonCache` keeps results by content key (`content_key`): the gate's reference side, the fine-tune's
base-model evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("PRODTUNE_CACHE") or Path.home() / ".cache" / "prodtune").expanduser()


def writable_cache_dir(name: str) -> Path:
    """`<cache root>/<name>` if it exists writable or can be made; else `~/.cache/prodtune/<name>`."""
    preferred = cache_root() / name
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return Path.home() / ".cache" / "prodtune" / name


def cpu_name() -> str:
    """The CPU's model name (cached results computed on CPU are keyed by it)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    return next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), os.uname().machine
    )


def content_key(payload: Any) -> str:
    """sha256 of `payload` as canonical JSON (sorted keys; non-JSON values by `str`)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JsonCache:
    """One JSON document per content key under `root`, for results that are expensive to recompute and
    fully determined by their key. A document that cannot be read is a miss, and one that cannot be
    written is not kept: either way only time is lost, never a result."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("cache: ignoring unreadable %s (%s)", path, exc)
            return None

    def put(self, key: str, value: Any) -> None:
        from components.common.atomic import atomic_open

        try:
            with atomic_open(self._path(key), encoding="utf-8") as fh:
                json.dump(value, fh, ensure_ascii=False)
        except OSError as exc:  # e.g. a read-only path: nothing depends on the cache
            log.warning("cache: cannot write under %s (%s); not cached", self.root, exc)
