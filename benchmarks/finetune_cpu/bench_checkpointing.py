"""CPU LoRA training steps with activation checkpointing off (the local recipes) and on, same run.

    python benchmarks/finetune_cpu/bench_checkpointing.py [--steps 5] [--threads 2] [--rounds 2]

TRL's SFTConfig defaults `gradient_checkpointing` to True, and `training.sft_args` used to set it only
when a recipe asked for it: the local recipes' `gradient_checkpointing: false` never reached the
Trainer, and every CPU step recomputed the forward pass in backward (a py-spy profile of the demo's
QA fine-tune showed `torch.utils.checkpoint` under backward). This trains through the real path
(`training.train_sft` with the CPU trainer, the local recipe's LoRA model) at the demo's row shapes
with completion-only labels, the recipe's value against checkpointing forced on, alternating whole
trainings for `--rounds` so that machine drift hits both alike. Each training's step times come from
the per-step log callback; the first step is a warm-up. Writes
benchmarks/finetune_cpu/results-checkpointing.json (docs/benchmarks.md quotes it).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import SHAPES, cli, cpu_name, timed_training

OUT = Path(__file__).with_name("results-checkpointing.json")


def _train(shape: tuple[int, int, int], steps: int, checkpointing: bool) -> tuple[list[float], bool]:
    """One training of `steps` steps; returns the step times after the first and whether the model's
    layers were checkpointed while it trained."""
    seen: list[bool] = []
    extra = {"activation_checkpointing": True} if checkpointing else {}
    times, _ = timed_training(
        shape,
        steps,
        on_step=lambda m: seen.append(bool(getattr(m, "is_gradient_checkpointing", False))),
        **extra,
    )
    return times, any(seen)


def main() -> None:
    args = cli(__doc__, steps=5, rounds=2)
    rows = []
    for name, shape in SHAPES.items():
        times: dict[bool, list[float]] = {False: [], True: []}
        active: dict[bool, bool] = {}
        for _ in range(args.rounds):
            for on in (False, True):
                t, active[on] = _train(shape, args.steps, on)
                times[on] += t
        off, on = statistics.median(times[False]), statistics.median(times[True])
        rows.append({"shape": name, "batch": shape[0], "prompt_tokens": shape[1], "answer_tokens": shape[2],
                     "checkpointing_on_s": round(on, 3), "recipe_off_s": round(off, 3),
                     "speedup": round(on / off, 2), "checkpointed": active})  # fmt: skip
        print(f"{name:9s} {shape[0]}x({shape[1]}+{shape[2]}): checkpointing on {on:.2f} s/step, "
              f"off {off:.2f} s/step -> {on / off:.2f}x (layers checkpointed: {active})")  # fmt: skip
    OUT.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "steps": args.steps,
                               "rounds": args.rounds, "rows": rows}, indent=2, default=str) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
