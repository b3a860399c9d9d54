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
# rows x (prompt tokens, answer tokens), as the demo's batches: QA carries three retrieved products
SHAPES = {"describer": (4, 50, 100), "qa": (4, 330, 50)}

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


def timed_training(
    shape: tuple[int, int, int],
    steps: int,
    update: dict[str, Any] | None = None,
    on_step: Any = None,
    **train_args: Any,
) -> tuple[list[float], list[float]]:
    """One training of `steps` steps through `training.train_sft` (the CPU trainer, the recipe's LoRA
    model, `random_rows(*shape)`): (the step times after the first, a warm-up; every step's loss).
    `update` overrides recipe fields, `train_args` go to `train_sft`, `on_step(model)` runs at each step."""
    import tempfile
    import time

    from components.common.config import load_config
    from components.finetune import training
    from components.finetune.schema import FinetuneConfig, TrainContext

    fields = {"max_steps": steps, "save_steps": 10_000, **(update or {})}
    config = load_config(FinetuneConfig, RECIPE).model_copy(update=fields)
    model, tok = lora_model(RECIPE)
    stamps: list[float] = []
    losses: list[float] = []

    def on_log(step: int, logs: dict[str, float]) -> None:
        if "loss" in logs:
            stamps.append(time.perf_counter())
            losses.append(round(float(logs["loss"]), 4))
            if on_step is not None:
                on_step(model)

    with tempfile.TemporaryDirectory() as out:
        ctx = TrainContext(config, "cpu", Path(out), random_rows(*shape, steps), on_log=on_log)
        start = time.perf_counter()
        training.train_sft(model, tok, ctx, None, use_cpu=True, **train_args)
    times = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    return times[1:], losses
