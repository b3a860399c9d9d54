"""Container images the KFP components run in (built from `images/`).

Override with env at compile time to point at your registry; heavy dependencies are baked into
these images, never installed at run time.
"""

from __future__ import annotations

import os

VERSION = "0.1.0"
REGISTRY = os.environ.get("PRODTUNE_IMAGE_REGISTRY", "ghcr.io/prodtune")

BASE_IMAGE = os.environ.get("PRODTUNE_BASE_IMAGE", f"{REGISTRY}/prodtune-base:{VERSION}")
TRAIN_GPU_IMAGE = os.environ.get("PRODTUNE_TRAIN_GPU_IMAGE", f"{REGISTRY}/prodtune-train-gpu:{VERSION}")
SERVE_IMAGE = os.environ.get("PRODTUNE_SERVE_IMAGE", f"{REGISTRY}/prodtune-serve:{VERSION}")
