"""CPU LoRA step time: TRL's SFTTrainer loss against ours (`training.completion_loss`), same run.

    python benchmarks/finetune_cpu/bench_loss.py [--steps 5] [--threads 2]

TRL 1.16's SFTTrainer patches the model with a chunked "fused LM head" that, off Triton devices,
scores every position and recomputes the logits in backward (plus entropy and top-1 for its logs).
A completion-only row needs the logits of its answer positions only: `completion_loss` runs the head
on those (`labelled_positions`). Both losses are timed as the Trainer calls them (compute_loss and
backward; no optimizer step, so both see the same weights) on the local describer recipe's LoRA model
(SmolLM2-135M, r 8, all-linear, no dropout), interleaved step by step, at the demo's row shapes with
completion-only labels. Also checks that the two losses
agree. Writes benchmarks/finetune_cpu/results-loss.json.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from common import SHAPES, cli, cpu_name, lora_model

OUT = Path(__file__).with_name("results-loss.json")


def _trainer(recipe: Path, out_dir: str):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = lora_model(recipe)
    args = SFTConfig(output_dir=out_dir, use_cpu=True, bf16=False, report_to="none", max_steps=1,
                     dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)  # fmt: skip
    data = Dataset.from_dict({"input_ids": [[1, 2]], "labels": [[-100, 2]], "attention_mask": [[1, 1]]})
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.model.train()
    return trainer


def _batch(rows: int, prompt: int, answer: int):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 49000, (rows, prompt + answer), generator=g)
    labels = ids.clone()
    labels[:, :prompt] = -100
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}


def main() -> None:
    from components.finetune.training import completion_loss

    args = cli(__doc__, steps=5)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(args.recipe, tmp)
        model = trainer.model
        losses = {
            "trl": lambda b: trainer.compute_loss(model, dict(b)),
            "ours": lambda b: completion_loss(model, dict(b))[0],
        }
        rows = []
        for shape, (n, prompt, answer) in SHAPES.items():
            batch = _batch(n, prompt, answer)
            times: dict[str, list[float]] = {k: [] for k in losses}
            values: dict[str, float] = {}
            for step in range(args.steps + 1):  # step 0 warms up and is not counted
                for name, fn in losses.items():
                    t0 = time.perf_counter()
                    loss = fn(batch)
                    loss.backward()
                    model.zero_grad()
                    if step:
                        times[name].append(time.perf_counter() - t0)
                    values[name] = float(loss.detach())
            trl, ours = statistics.median(times["trl"]), statistics.median(times["ours"])
            rows.append({"shape": shape, "rows": n, "prompt": prompt, "answer": answer, "trl_s": round(trl, 3),
                         "ours_s": round(ours, 3), "speedup": round(trl / ours, 2),
                         "loss_trl": round(values["trl"], 5), "loss_ours": round(values["ours"], 5)})  # fmt: skip
            print(f"{shape:9s} {n}x({prompt}+{answer}): TRL {trl:.2f} s, ours {ours:.2f} s -> {trl / ours:.2f}x "
                  f"(loss {values['trl']:.4f} vs {values['ours']:.4f})")  # fmt: skip
    OUT.write_text(
        json.dumps({"cpu": cpu_name(), "threads": args.threads, "steps": args.steps, "rows": rows}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
