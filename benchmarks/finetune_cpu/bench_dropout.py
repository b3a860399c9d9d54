"""CPU LoRA step time with and without LoRA dropout, same model, same batches, same run.

    python benchmarks/finetune_cpu/bench_dropout.py [--steps 6] [--threads 2]

The embedded demo trains SmolLM2-135M with LoRA on CPU. A profile of one step showed dropout's
Bernoulli masks (`aten::bernoulli_`, one per LoRA input, ~210 per step) as the second-largest cost
after the matmuls. This measures a full step (forward, backward, AdamW) of the demo's LoRA setup
(the local describer recipe: r 8, all-linear) at the demo's two row shapes, dropout 0.05 against 0, the two interleaved step by
step so that machine drift hits both alike. Reports the median step time and the ratio; writes
benchmarks/finetune_cpu/results.json (docs/benchmarks.md quotes it).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from common import cli, cpu_name, lora_model

SHAPES = {"describer": (4, 130), "qa": (4, 384)}  # rows x tokens, as the demo's batches
OUT = Path(__file__).with_name("results.json")


def _step(model, opt, ids) -> float:
    t0 = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t0


def main() -> None:
    import torch

    args = cli(__doc__, steps=6)
    models = {}
    for p in (0.05, 0.0):
        model, _ = lora_model(args.recipe, dropout=p)
        models[p] = (model, torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=1e-4))
    rows = []
    for shape, (batch, length) in SHAPES.items():
        ids = torch.randint(0, 49000, (batch, length), generator=torch.Generator().manual_seed(0))
        times: dict[float, list[float]] = {p: [] for p in models}
        for step in range(args.steps + 1):  # the first step of each is a warm-up, not counted
            for p, (model, opt) in models.items():
                t = _step(model, opt, ids)
                if step:
                    times[p].append(t)
        with_d, without = statistics.median(times[0.05]), statistics.median(times[0.0])
        rows.append({"shape": shape, "batch": batch, "tokens": length, "dropout_0.05_s": round(with_d, 3),
                     "dropout_0_s": round(without, 3), "speedup": round(with_d / without, 2)})  # fmt: skip
        print(f"{shape:9s} {batch}x{length}: dropout 0.05 {with_d:.2f} s/step, 0 {without:.2f} s/step "
              f"-> {with_d / without:.2f}x")  # fmt: skip
    OUT.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads,
                               "steps": args.steps, "rows": rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
