"""Markdown tables for docs/benchmarks.md and docs/gpu.md from the GPU calls' results JSON files.

    python -m benchmarks.finetune_gpu.report results-1.json results-2.json > /tmp/tables.md

Later files win for the same case. The T4 column is a projection, not a measurement: H200 minutes times
the ratio of the two cards' published dense fp16 tensor throughput (T4_RATIO).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# NVIDIA datasheets: T4 65 TFLOPS fp16 (mixed precision, tensor cores); H200 SXM 989 TFLOPS bf16/fp16
# dense (1,979 with sparsity). Memory bandwidth gives about the same ratio (4.8 TB/s vs 320 GB/s = 15x).
T4_TFLOPS, H200_TFLOPS = 65.0, 989.0
T4_RATIO = H200_TFLOPS / T4_TFLOPS
NAMES = {"qwen2.5-7b": "Qwen2.5-7B shape, describer.yaml", "llama-3.2-3b": "Llama-3.2-3B shape, qa.yaml"}
LABEL = {
    "unsloth-packed": "Unsloth, packed (recipe default), bf16",
    "unsloth-padded": "Unsloth, padded, bf16",
    "hf-padded": "HF + PEFT + bnb, padded, bf16 (like for like)",
    "hf-packed": "HF + PEFT + bnb, packed, bf16",
    "unsloth-packedfp16": "Unsloth, packed, fp16 (T4 precision, forced)",
    "unsloth-full": "Unsloth, packed, bf16, whole sample x 2 epochs",
}


def load(paths: list[str]) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for p in paths:
        cases.update(json.loads(Path(p).read_text())["cases"])
    return cases


def throughput_table(cases: dict[str, Any]) -> str:
    out = []
    for model, name in NAMES.items():
        base = cases.get(f"hf-padded-{model}", {}).get("useful_tokens_per_s")
        out += [
            f"\n**{name}**\n",
            "| case | rows/step (all rows after packing) | useful tok/step | pad share | warm-up s | steady s/step | "
            "useful tok/s | vs HF padded | peak reserved + context GiB | < 16 GiB | < T4's 15,360 MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for key, label in LABEL.items():
            r = cases.get(f"{key}-{model}")
            if not r:
                continue
            if not r.get("ok"):
                out.append(f"| {label} | failed: {str(r.get('error'))[:120]} ||||||||||")
                continue
            c, t = r.get("config") or {}, r.get("trainer") or {}
            tps = r.get("useful_tokens_per_s")
            ratio = f"{tps / base:.2f}x" if tps and base else "-"
            rows = c.get("per_device_batch_size", 0) * c.get("grad_accum", 0)
            out.append(
                f"| {label} | {rows} ({t.get('train_rows_after_packing')} in all) | "
                f"{_n(r.get('useful_tokens_per_step'))} | {r.get('pad_share')} | {r.get('warmup_seconds')} | "
                f"{r.get('steady_step_seconds')} | {_n(tps)} | {ratio} | "
                f"{r.get('peak_reserved_gib')} + {r.get('context_gib')} = {r.get('peak_with_context_gib')} | "
                f"{_yes(r.get('fits_16gib'))} | {_yes(r.get('fits_t4_15360mib'))} |"
            )
    return "\n".join(out)


def facts_table(cases: dict[str, Any]) -> str:
    """The like-for-like settings as the live trainers reported them."""
    out = [
        "| case | attention | optimizer | bf16 / fp16 | grad. checkpointing | LoRA dtype | embed / lm_head dtype | collator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, r in cases.items():
        t = r.get("trainer")
        if t:
            out.append(
                f"| {case} | {t['attn_implementation']} | {t['optim']} | {t['bf16']} / {t['fp16']} | "
                f"{t['gradient_checkpointing']} | {t['lora_dtype']} | {t['embed_dtype']} / "
                f"{t['lm_head_dtype']} | {t['collator']} |"
            )
    return "\n".join(out)


def wall_table(cases: dict[str, Any]) -> str:
    out = [
        "| shape, task | rows | tokens per epoch | case | H200 minutes (2 epochs) | T4 projection, minutes |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for model, name in NAMES.items():
        for key in ("unsloth-packed", "unsloth-packedfp16", "hf-padded"):
            r = cases.get(f"{key}-{model}") or {}
            rows, tps = r.get("train_rows"), r.get("useful_tokens_per_s")
            if not (rows and tps):
                continue
            minutes = (
                2 * rows["total_tokens"] / tps + r.get("setup_seconds", 0) + r.get("warmup_seconds", 0)
            ) / 60
            # T4: training time scaled by the throughput ratio; setup and warm-up as measured (not scaled)
            t4_min = minutes + (T4_RATIO - 1) * 2 * rows["total_tokens"] / tps / 60
            t4 = f"{t4_min:.0f}" if key == "unsloth-packedfp16" else "-"
            out.append(
                f"| {name} | {rows['n']} | {_n(rows['total_tokens'])} | {key} | {minutes:.1f} | {t4} |"
            )
        full = cases.get(f"unsloth-full-{model}") or {}
        if full.get("ok"):
            out.append(
                f"| {name} | {full['train_rows']['n']} | {_n(full['train_rows']['total_tokens'])} | "
                f"unsloth-full (measured: trainer wall {full['train_seconds']} s) | "
                f"{full['wall_seconds'] / 60:.1f} (process) | - |"
            )
    return "\n".join(out)


def histograms(cases: dict[str, Any]) -> str:
    out = []
    for model, name in NAMES.items():
        r = cases.get(f"unsloth-packed-{model}") or cases.get(f"hf-padded-{model}") or {}
        if r.get("train_rows"):
            out.append(f"{name}, tokens per row (real tokenizer):\n```\n{r['train_rows']['histogram']}\n```")
    return "\n".join(out)


def _n(x: Any) -> str:
    return f"{x:,.0f}" if isinstance(x, int | float) else str(x)


def _yes(x: Any) -> str:
    return "n/a" if x is None else ("yes" if x else "NO")


def main(argv: list[str]) -> int:
    cases = load(argv)
    print(
        throughput_table(cases),
        "\n\n",
        facts_table(cases),
        "\n\n",
        wall_table(cases),
        "\n\n",
        histograms(cases),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
