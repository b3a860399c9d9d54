"""Where prodtune keeps what it can rebuild: `$PRODTUNE_CACHE`, default `~/.cache/prodtune`.

The images bake read-only assets into `PRODTUNE_CACHE=/opt/prodtune/cache` (the GGUF converter) and
run with a read-only root filesystem, writing only to `$HOME` and `/tmp`; so a cache that steps
write to falls back to `~/.cache/prodtune/<name>` when the configured root cannot be written.
"""

from __future__ import annotations

import os
from pathlib import Path


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
