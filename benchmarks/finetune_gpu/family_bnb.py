"""Both production families as pre-quantized bnb-4bit checkpoints: trained on the GPU, merged and exported here.

GPU host (after scripts/gpu/bootstrap.sh), one family per call of `gpu`:
    python -m benchmarks.finetune_gpu.family_bnb gpu --family qwen2.5 --tokenizer DIR --data DIR --out $OUT
CPU, with what came back (`<family>-gpu.tgz`, maybe split into `.part-N`):
    python -m benchmarks.finetune_gpu.family_bnb cpu --family qwen2.5 --tgz FILE --work DIR

`gpu`: a tiny random-weight checkpoint of the family's published architecture (Qwen2ForCausalLM with
q/k/v bias and untied embeddings; LlamaForCausalLM with llama3 RoPE scaling and tied embeddings; the
real vocabulary sizes) with the family's real tokenizer, saved as a pre-quantized bnb-4bit checkpoint
(`shapes.quantize_bnb4`, the unsloth/*-bnb-4bit form) -> the project's `run_finetune` with the family's
production recipe (describer.yaml for Qwen2.5, qa.yaml for Llama 3.2) on `backend: unsloth`, packing and
precision as the recipe resolves them -> adapter/. The 16-bit base for the merge is dequantized from the
4-bit checkpoint there (bitsandbytes dequantizes on CUDA), and travels back with the adapter.
`cpu`: the 16-bit base + the family tokenizer built here + adapter -> the fine-tune step's CPU merge
(`backend_hf.save_merged`) -> `components.export.core.export_gguf` (F16 + quants) -> llama.cpp generates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.finetune_gpu.shapes import SHAPES  # noqa: E402

# Tiny widths, published architectures and vocabularies (Qwen2.5-7B's 152,064; Llama 3.2's 128,256).
TINY = {
    "qwen2.5": {
        **SHAPES["qwen2.5-7b"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_window_layers": 2,
    },
    "llama3.2": {
        **SHAPES["llama-3.2-3b"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
    },
}
RECIPE = {"qwen2.5": ("describer.yaml", "describer"), "llama3.2": ("qa.yaml", "qa")}
PART_BYTES = 15 * 1024 * 1024  # a file back from the GPU host may be 16 MiB at most


def build_tiny(family: str, tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from benchmarks.finetune_gpu.shapes import TOKENIZER_FILES

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    values = dict(TINY[family])
    model_type = values.pop("model_type")
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    bos = tok.convert_tokens_to_ids(tok.bos_token) if tok.bos_token else eos
    cfg = AutoConfig.for_model(model_type, bos_token_id=bos, eos_token_id=eos, **values)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)
    for f in TOKENIZER_FILES:
        if (tokenizer_dir / f).is_file():
            shutil.copy2(tokenizer_dir / f, out / f)
    marker = {
        "shape": f"tiny-{family}",
        "num_layers": cfg.num_hidden_layers,
        "params": model.num_parameters(),
    }
    (out / ".random-shape").write_text(json.dumps(marker), encoding="utf-8")
    return out


def dequantize_to_16bit(bnb_dir: Path, out: Path) -> Path:
    """The 16-bit base a merge goes onto: the 4-bit checkpoint dequantized (no tokenizer: it is rebuilt)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(bnb_dir), device_map={"": 0}, local_files_only=True)
    model = (model.dequantize() or model).to(torch.bfloat16)
    model.hf_quantizer, model.is_quantized = None, False  # else save_pretrained writes a 4-bit config
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out), safe_serialization=True)
    if "quantization_config" in (out / "config.json").read_text():
        raise RuntimeError(f"{out} still says it is quantized")
    return out


def gpu(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from benchmarks.finetune_gpu.run import production_config
    from benchmarks.finetune_gpu.shapes import quantize_bnb4
    from components.finetune.core import run_finetune

    work = Path(args.work) / f"family-{args.family}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    bf16 = build_tiny(args.family, Path(args.tokenizer), work / "bf16")
    cuda = torch.cuda.is_available()  # without CUDA: plumbing check (no 4-bit, HF backend, base16 = bf16)
    bnb = quantize_bnb4(bf16, work / "bnb-4bit") if cuda else bf16
    qcfg = json.loads((bnb / "config.json").read_text()).get("quantization_config")
    recipe, task = RECIPE[args.family]
    top = {"max_seq_length": 256, "grad_accum": 1} if not cuda else {}
    config = production_config(
        recipe, bnb, "unsloth" if cuda else "hf", args.steps, 4, logging_steps=1, **top
    )
    rows = [json.loads(x) for x in (Path(args.data) / f"{task}.jsonl").read_text().splitlines() if x]
    train, ev = work / "train.jsonl", work / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("split") != "eval"))
    ev.write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("split") == "eval"))
    if cuda:
        from components.finetune import backend_unsloth

        # Unsloth's merged_16bit save refuses a local pre-quantized base ("base model should be a 16bit ...
        # base model for a 16bit merge, but ... is nf4"; seen on the GPU host): merge on the CPU instead,
        # onto the 16-bit base dequantized below (issue 10: never merge into a 4-bit model).
        def merge_elsewhere(model: Any, tokenizer: Any, out: Path, eos_tokens: list[str]) -> None:
            (Path(out) / "NOT-MERGED").write_text("merged on the CPU onto base16/ (family_bnb.py cpu)\n")

        backend_unsloth.save_merged = merge_elsewhere
    result = run_finetune(config, train, ev, work / "ft", resume=False)
    base16 = dequantize_to_16bit(bnb, work / "base16") if cuda else bf16
    s = result.summary
    info = {
        "family": args.family,
        "recipe": recipe,
        "quantization_config": qcfg,
        "backend": s["backend"],
        "steps": s["steps"],
        "train_loss": s["train_loss"],
        "data": s["data"],
        "eval": result.eval,
        "config": {k: s["config"][k] for k in ("packing", "precision", "max_seq_length", "optim")},
        "bnb_files": sorted(p.name for p in bnb.iterdir()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (work / "ft" / "gpu-info.json").write_text(json.dumps(info, indent=1, default=str))
    pack(work, Path(args.out) / f"{args.family}-gpu.tgz", base16)
    print(json.dumps({k: info[k] for k in ("family", "backend", "steps", "config", "seconds")}))
    print(f"loss {s['train_loss'][:3]} ... {s['train_loss'][-3:]}")
    return info


def pack(work: Path, dest: Path, base16: Path) -> None:
    """adapter/ + summaries + the 16-bit base (weights, config) in one tgz, cut into <16 MiB parts."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for name in ("adapter", "finetune-summary.json", "eval.json", "gpu-info.json"):
            tar.add(work / "ft" / name, arcname=name)
        for f in base16.iterdir():
            tar.add(f, arcname=f"base16/{f.name}")
    data = dest.read_bytes()
    if len(data) > PART_BYTES:
        for i in range(0, len(data), PART_BYTES):
            dest.with_name(f"{dest.name}.part-{i // PART_BYTES}").write_bytes(data[i : i + PART_BYTES])
        dest.unlink()


def cpu(args: argparse.Namespace) -> dict[str, Any]:
    """Merge onto the 16-bit base with the real tokenizer, export GGUF, generate with llama.cpp."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from benchmarks.finetune_gpu.export_cpu import generate_chat
    from components.common.config import CONFIG_DIR, load_config
    from components.export.core import ExportConfig, export_gguf
    from components.finetune import backend_hf

    work = Path(args.work)
    model_dir = work / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    tgz = Path(args.tgz)
    parts = sorted(tgz.parent.glob(tgz.name + ".part-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    blob = tgz.read_bytes() if tgz.is_file() else b"".join(p.read_bytes() for p in parts)
    (work / "joined.tgz").write_bytes(blob)
    with tarfile.open(work / "joined.tgz") as tar:
        tar.extractall(model_dir, filter="data")
    summary = json.loads((model_dir / "finetune-summary.json").read_text())
    tokenizer = tokenizer_for(args.family, work / "tokenizer", args.tokenizer)
    tokenizer.chat_template = summary["chat_template"]
    for f in (work / "tokenizer").iterdir():  # the base dir gets the real tokenizer next to its weights
        shutil.copy2(f, model_dir / "base16" / f.name)
    t = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(
        str(model_dir / "base16"), dtype=torch.float32, local_files_only=True
    )
    model = PeftModel.from_pretrained(base, str(model_dir / "adapter"))
    (model_dir / "merged").mkdir()
    backend_hf.save_merged(model, tokenizer, model_dir / "merged", summary["eos_tokens"])
    result: dict[str, Any] = {"family": args.family, "merge_s": round(time.perf_counter() - t, 1)}
    merged_cfg = json.loads((model_dir / "merged" / "config.json").read_text())
    result["merged_dtype"] = merged_cfg.get("dtype") or merged_cfg.get("torch_dtype")
    result["merged_has_quantization_config"] = "quantization_config" in merged_cfg
    config = load_config(ExportConfig, CONFIG_DIR / "export.yaml", {"publish": False})
    t = time.perf_counter()
    files = export_gguf(model_dir / "merged", work / "export", summary["task"], config)
    result["export_s"] = round(time.perf_counter() - t, 1)
    result["files"] = {k: f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for k, p in files.items()}
    result["generations"] = {
        lvl: generate_chat(files[lvl], summary["task"]) for lvl in ("F16", config.serve_level)
    }
    result["gpu"] = json.loads((model_dir / "gpu-info.json").read_text())
    (work / "family-cpu.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "gpu"}, indent=1, default=str))
    return result


def tokenizer_for(family: str, out: Path, given: str | None) -> Any:
    """The family's real tokenizer: a given dir, else built by the families fixture (tests/fixtures)."""
    from transformers import AutoTokenizer

    if given:
        src = Path(given)
    else:
        from tests.fixtures.family_models import build_tokenizer

        src = Path(build_tokenizer(family, out.with_name("tokenizer-built")))
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    return AutoTokenizer.from_pretrained(str(out), local_files_only=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g, c = sub.add_parser("gpu"), sub.add_parser("cpu")
    for s in (g, c):
        s.add_argument("--family", required=True, choices=sorted(TINY))
        s.add_argument("--work", default="/tmp/prodtune-family")
    g.add_argument("--tokenizer", required=True)
    g.add_argument("--data", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--steps", type=int, default=30)
    c.add_argument("--tgz", required=True)
    c.add_argument("--tokenizer", default=None, help="tokenizer dir (default: build with tests/fixtures)")
    args = p.parse_args(argv)
    (gpu if args.cmd == "gpu" else cpu)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
