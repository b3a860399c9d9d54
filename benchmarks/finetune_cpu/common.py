"""What the CPU fine-tune benchmarks share: the demo recipe's LoRA model, the CLI, the CPU's name.

The model is built the way `prodtune finetune` builds it (`backend_hf.load` + `backend_hf.add_lora` on
pipelines/configs/local/describer.yaml), so the benchmarks measure the recipe, not a copy of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "pipelines/configs/local/describer.yaml"

from components.common.cache import cpu_name  # noqa: E402,F401  (re-exported: the benchmarks record it)


def cli(doc: str | None, steps: int, **ints: int) -> argparse.Namespace:
    """--steps, --threads, --recipe and one --name per `ints` (its default); sets torch's threads."""
    import torch

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=RECIPE, help="fine-tune recipe (base model, LoRA)")
    ap.add_argument("--steps", type=int, default=steps, help="timed steps per case, after one warm-up")
    ap.add_argument("--threads", type=int, default=2)
    for name, default in ints.items():
        ap.add_argument(f"--{name}", type=int, default=default)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args


def lora_model(recipe: Path, dropout: float | None = None) -> Any:
    """The recipe's base model with its LoRA adapter, in train mode; `dropout` overrides the recipe's."""
    from components.common.config import load_config
    from components.finetune import backend_hf
    from components.finetune.schema import FinetuneConfig

    config = load_config(FinetuneConfig, recipe)
    if dropout is not None:
        config = config.model_copy(update={"lora": config.lora.model_copy(update={"dropout": dropout})})
    model, tokenizer = backend_hf.load(config, "cpu")
    model = backend_hf.add_lora(model, config)
    model.train()
    return model, tokenizer


def random_rows(batch: int, prompt: int, answer: int, steps: int) -> list[Any]:
    """`batch * steps` completion-only rows of random tokens: `prompt` masked, `answer` labelled."""
    import torch

    from components.finetune.schema import Tokenized

    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(batch * steps):
        ids = torch.randint(0, 49000, (prompt + answer,), generator=g).tolist()
        rows.append(Tokenized(ids, [-100] * prompt + ids[prompt:], prompt, False))
    return rows
