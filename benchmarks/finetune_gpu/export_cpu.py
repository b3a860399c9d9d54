"""CPU half of the GPU proof: the GPU-trained SmolLM2 adapter -> merged here -> GGUF export -> llama.cpp generates.

    python -m benchmarks.finetune_gpu.export_cpu ADAPTER_TGZ --work DIR [--full-export]

ADAPTER_TGZ is what `run.py all --adapter-to` packed on the GPU host (adapter/, finetune-summary.json,
eval.json, eval-table.md, loss.png). The adapter is merged on CPU onto the same base the GPU run used
(SmolLM2-135M-Instruct materialized from the same GGUF by `components.finetune.materialize`) with the
fine-tune step's own `backend_hf.save_merged`, exported with the export step's own converter + quantizer
(`components.export.core.export_gguf`, or the whole `run_export` with --full-export) and loaded by
llama-cpp-python on CPU, which generates for held-out titles. Writes DIR/export-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TITLES = ["Sony Keyboard 9 inch Red", "Braun Kettle 12 inch Navy Blue", "Anker Backpack 14 inch Black"]


def merge_adapter(model_dir: Path) -> Path:
    """`model_dir/adapter` + the local base -> `model_dir/merged` (fine-tune step's CPU merge)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from components.finetune import backend_hf
    from components.finetune.materialize import DEFAULT_GGUF, DEFAULT_OUTPUT, materialize

    summary = json.loads((model_dir / "finetune-summary.json").read_text(encoding="utf-8"))
    base_dir = materialize(DEFAULT_GGUF, DEFAULT_OUTPUT)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    tokenizer.chat_template = summary["chat_template"]
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True)
    model = PeftModel.from_pretrained(base, str(model_dir / "adapter"))
    merged = model_dir / "merged"
    merged.mkdir(exist_ok=True)
    backend_hf.save_merged(model, tokenizer, merged, summary["eos_tokens"])
    return merged


def generate(gguf: Path, template_summary: dict[str, Any]) -> list[dict[str, str]]:
    """Greedy answers of the GGUF through llama.cpp's chat completion (the GGUF's embedded template)."""
    from llama_cpp import Llama

    from components.common.chat_format import describer_messages

    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, verbose=False)
    out = []
    for title in TITLES:
        r = llm.create_chat_completion(messages=describer_messages(title), max_tokens=64, temperature=0.0)
        out.append({"title": title, "output": r["choices"][0]["message"]["content"].strip()})
    return out


QA_CONTEXT = [
    ("Anker Backpack 14 inch Black", "A 14 inch black backpack made of nylon, with two side pockets.")
]


def generate_chat(gguf: Path, task: str, max_tokens: int = 48) -> list[dict[str, str]]:
    """Greedy answers through llama.cpp's chat completion with the GGUF's embedded template."""
    from llama_cpp import Llama

    from components.common.chat_format import describer_messages, qa_messages

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=2, verbose=False)
    prompts = (
        [describer_messages(t) for t in TITLES[:2]]
        if task == "describer"
        else [qa_messages("What is it made of?", QA_CONTEXT)]
    )
    out = []
    for messages in prompts:
        r = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
        out.append({"input": messages[-1]["content"][-80:], "output": r["choices"][0]["message"]["content"]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter_tgz")
    p.add_argument("--work", required=True)
    p.add_argument("--full-export", action="store_true", help="whole run_export (fidelity + eval gates)")
    args = p.parse_args(argv)

    from components.common.config import CONFIG_DIR, load_config
    from components.export.core import ExportConfig, export_gguf, run_export

    work = Path(args.work)
    model_dir = work / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.adapter_tgz) as tar:
        tar.extractall(model_dir, filter="data")
    result: dict[str, Any] = {"adapter_tgz": str(args.adapter_tgz)}
    t = time.perf_counter()
    merged = merge_adapter(model_dir)
    result["merge_s"] = round(time.perf_counter() - t, 1)
    summary = json.loads((model_dir / "finetune-summary.json").read_text(encoding="utf-8"))
    config = load_config(ExportConfig, CONFIG_DIR / "export.yaml", {"publish": False})
    t = time.perf_counter()
    out = work / "export"
    if args.full_export:
        exp = run_export(model_dir, out, config)
        files = {level: out / name for level, name in exp["files"].items()}
        result["export_summary"] = {
            k: exp.get(k) for k in ("files", "stops", "fidelity", "eval_gate", "levels")
        }
    else:
        files = export_gguf(merged, out, summary["task"], config)
    result["export_s"] = round(time.perf_counter() - t, 1)
    result["files"] = {
        level: f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)" for level, path in files.items()
    }
    # F16 shows the export is faithful (it matches HF greedy on merged/); the served quant is what ships.
    result["generations"] = {level: generate(files[level], summary) for level in ("F16", config.serve_level)}
    (work / "export-cpu.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
