"""Container images the KFP components run in (built from `images/` by `scripts/images.sh`).

Override with env at compile time to point at your registry; heavy dependencies are baked into
these images, never installed at run time. `scripts/images.sh` reads REGISTRY and VERSION from here
and tags each image `<REGISTRY>/prodtune-<name>:<VERSION>` and `:<VERSION>-<content hash>`.
"""

from __future__ import annotations

import os

VERSION = "0.1.0"
REGISTRY = os.environ.get("PRODTUNE_IMAGE_REGISTRY", "ghcr.io/prodtune")
NAMES = ("base", "serve", "mlflow", "train-gpu")


def image(name: str) -> str:
    """The reference for image `name`: `PRODTUNE_<NAME>_IMAGE` if set, else the registry's versioned tag."""
    if name not in NAMES:
        raise ValueError(f"unknown image {name!r}; known: {', '.join(NAMES)}")
    env = f"PRODTUNE_{name.upper().replace('-', '_')}_IMAGE"
    return os.environ.get(env) or f"{REGISTRY}/prodtune-{name}:{VERSION}"


BASE_IMAGE = image("base")
TRAIN_GPU_IMAGE = image("train-gpu")
SERVE_IMAGE = image("serve")
MLFLOW_IMAGE = image("mlflow")
