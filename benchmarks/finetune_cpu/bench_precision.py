"""CPU LoRA training steps and eval generation in float32 against bfloat16 autocast, same run.

    python benchmarks/finetune_cpu/bench_precision.py [--steps 5] [--threads 2] [--rounds 2]

`precision: auto` trains on CPU under bf16 autocast (float32 master weights) where the CPU computes
bf16 natively (AMX, or AVX512-BF16 as on AMD Zen 4; `training.cpu_native_bf16`). This measures it
through the real path: whole trainings through `training.train_sft` (the CPU trainer, the local
recipe's LoRA model, completion-only rows at the demo's shapes), fp32 and bf16 alternating for
`--rounds` so that machine drift hits both alike (each training's step times from the per-step log
callback, the first step a warm-up), keeping every step's loss to show how far bf16 moves it. Then
greedy generation as `evaluate.generate` runs it (8 rows x 96 new tokens), float32 against autocast:
why the fine-tune step's eval stays float32 (autocast recasts the frozen weights at every decoding
step). Writes benchmarks/finetune_cpu/results-precision.json (docs/benchmarks.md quotes it). On a
CPU without native bf16 the bf16 column is emulated and slow: that is why `auto` stays fp32 there.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from common import RECIPE, SHAPES, cli, cpu_name, lora_model, timed_training

OUT = Path(__file__).with_name("results-precision.json")


def _generate(precision: str, rows: int = 8, new_tokens: int = 96) -> float:
    """Seconds for one greedy batch as the eval runs it (min_new_tokens: every row runs to the end)."""
    import torch

    from components.finetune import backend_hf

    model, _ = lora_model(RECIPE)
    model = backend_hf.for_inference(model)
    ids = torch.randint(100, 40000, (rows, 50), generator=torch.Generator().manual_seed(0))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        model.generate(input_ids=ids[:, :8], max_new_tokens=4, do_sample=False, pad_token_id=0)  # warm-up
        start = time.perf_counter()
        model.generate(input_ids=ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, pad_token_id=0)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    from components.finetune.training import cpu_native_bf16

    args = cli(__doc__, steps=5, rounds=2)
    result: dict = {"cpu": cpu_name(), "native_bf16": cpu_native_bf16(), "threads": args.threads,
                    "steps": args.steps, "rounds": args.rounds, "rows": []}  # fmt: skip
    for name, shape in SHAPES.items():
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        losses: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for precision in times:
                t, losses[precision] = timed_training(shape, args.steps, {"precision": precision})
                times[precision] += t
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        result["rows"].append({"shape": name, "batch": shape[0], "prompt_tokens": shape[1],
                               "answer_tokens": shape[2], "fp32_s": round(fp32, 3), "bf16_s": round(bf16, 3),
                               "speedup": round(fp32 / bf16, 2), "losses": losses})  # fmt: skip
        print(f"{name:9s} {shape[0]}x({shape[1]}+{shape[2]}): fp32 {fp32:.2f} s/step, bf16 autocast "
              f"{bf16:.2f} s/step -> {fp32 / bf16:.2f}x; losses fp32 {losses['fp32']} bf16 {losses['bf16']}")  # fmt: skip
    gen = {p: [] for p in ("fp32", "bf16")}
    for _ in range(args.rounds):
        for precision in gen:
            gen[precision].append(_generate(precision))
    g32, g16 = statistics.median(gen["fp32"]), statistics.median(gen["bf16"])
    result["generation"] = {"rows": 8, "new_tokens": 96, "fp32_s": round(g32, 2), "bf16_s": round(g16, 2),
                            "speedup": round(g32 / g16, 2)}  # fmt: skip
    print(f"generation 8 rows x 96 tokens: fp32 {g32:.1f} s, bf16 autocast {g16:.1f} s -> {g32 / g16:.2f}x")
    OUT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
