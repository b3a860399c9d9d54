"""Which dtype the HF reference model runs in for the fidelity comparison (export pods are CPU).

float32 is the most exact reference and what the SmolLM2 thresholds were measured with, but a 7B
model in float32 needs ~30 GB of RAM in the export pod; bfloat16 halves that and is the dtype the
production bases are published in. So: float32 up to `FP32_MAX_PARAMS`, bfloat16 above.
"""

from __future__ import annotations

import json
from pathlib import Path

FP32_MAX_PARAMS = 1_500_000_000
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def parameter_count(model_dir: str | Path) -> int:
    """Parameters estimated from the safetensors sizes and the stored dtype (no weights are read)."""
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    per = _BYTES.get(str(cfg.get("dtype") or cfg.get("torch_dtype") or "float16"), 2)
    total = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    return total // per


def reference_dtype(model_dir: str | Path) -> str:
    return "float32" if parameter_count(model_dir) <= FP32_MAX_PARAMS else "bfloat16"
