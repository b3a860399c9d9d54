"""GPU fine-tune benchmark on the rows we really train on: Unsloth packed / padded vs HF + PEFT, same run.

    source scripts/gpu/bootstrap.sh                                          # GPU host (docs/gpu.md)
    python -m benchmarks.finetune_gpu.run all --out $OUT --data .carry/bench-data \
        --tokenizer qwen2.5=DIR --tokenizer llama3.2=DIR                     # default cases, both shapes
    python -m benchmarks.finetune_gpu.run all --out /tmp/o --smoke --data DIR --tokenizer llama3.2=DIR  # CPU

A case is `<backend>-<variant>-<shape>`: backend `unsloth` or `hf`; variant `packed` (the recipe's
`packing: true`: BFD-packed rows, padding-free, bf16), `padded` (`packing: false`, bf16), `packedfp16` /
`paddedfp16` (the T4's precision, forced on the H200), `full` (packed, the whole sample for the recipe's
2 epochs instead of `--steps`); shape `qwen2.5-7b` (describer.yaml), `llama-3.2-3b` (qa.yaml), or `tiny`
(a 2-layer Llama, CPU plumbing check). Every case is the project's own `run_finetune` with the production
recipe; overridden: base_model (a pre-quantized bnb-4bit dir of random weights with the published shape,
built by `build`), the dataset (`make_data.py`: the project's synthesis output from the generated
catalogue, so row lengths are the real mix), max_steps, eval.max_examples (0), logging_steps (1),
packing, precision, optim (`adamw_8bit`, Unsloth's default, for both backends) and backend.

Like for like: the HF + PEFT baseline loads the same 4-bit checkpoint, trains with the same optimizer,
bf16 compute with bf16 embeddings / lm_head (PEFT's `prepare_model_for_kbit_training` would upcast them
to fp32, which Unsloth does not: replaced here by its input-grad hook only), SDPA attention, gradient
checkpointing, LoRA targets and batch geometry. What must differ: Unsloth's own kernels and its
offloaded gradient checkpointing (that is what is measured).

Useful tokens/s: a wrapper around the trainer's collator counts the non-pad tokens of every micro-batch
(packed rows have none); optimizer step k holds micro-batches (k-1)*accum .. k*accum-1. Steady =
steps after `--warmup` (Unsloth compiles in step 1); tokens/s = their tokens over their seconds.
Memory: the CUDA context (device memory in use outside torch's allocator, read with cudaMemGetInfo
before training and after) is counted: under `--cap-gib` the allocator is capped at cap - context, and
`peak_with_context_gib` = peak reserved + context. Each case runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.finetune_gpu import make_data  # noqa: E402
from benchmarks.finetune_gpu.shapes import FAMILY, RECIPES  # noqa: E402

GIB = 1024**3
LIMIT_GIB = 16.0  # the mission's card
T4_GIB = 15360 / 1024  # what a T4 really offers (GPU Feature Discovery: nvidia.com/gpu.memory=15360)
SHAPED = ["qwen2.5-7b", "llama-3.2-3b"]
VARIANTS = {
    "packed": {"packing": True, "precision": "bf16"},
    "padded": {"packing": False, "precision": "bf16"},
    "packedfp16": {"packing": True, "precision": "fp16"},
    "paddedfp16": {"packing": False, "precision": "fp16"},
    "full": {"packing": True, "precision": "bf16"},
}
DEFAULT_CASES = [
    f"{c}-{s}"
    for s in SHAPED
    for c in ("unsloth-packed", "unsloth-padded", "hf-padded", "unsloth-packedfp16", "hf-packed")
]
VERSION_NAMES = [
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "bitsandbytes",
    "unsloth",
    "unsloth_zoo",
]


def parse_case(case: str) -> tuple[str, str, str]:
    backend, _, rest = case.partition("-")
    variant, _, model = rest.partition("-")
    if backend not in ("unsloth", "hf") or variant not in VARIANTS or model not in [*SHAPED, "tiny"]:
        raise SystemExit(f"unknown case {case!r} (<unsloth|hf>-<{'|'.join(VARIANTS)}>-<shape>)")
    return backend, variant, model


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for n in VERSION_NAMES:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "-"
    return out


# --------------------------------------------------------------------------------------- child side
def production_config(
    recipe: str, base_model: Path, backend: str, max_steps: int | None, eval_examples: int, **top: Any
):
    """The production YAML with only the benchmark's overrides (see module docstring)."""
    from components.common.config import CONFIG_DIR, load_config
    from components.finetune.core import FinetuneConfig

    data = load_config(FinetuneConfig, CONFIG_DIR / recipe).model_dump()
    data.update(base_model=str(base_model), backend=backend, max_steps=max_steps, **top)
    data["eval"] = {**data["eval"], "max_examples": eval_examples}
    return FinetuneConfig.model_validate(data)


def useful_tokens(batch: Any) -> tuple[int, int, int]:
    """(non-pad tokens, tokens incl. padding, supervised tokens) of one collated micro-batch."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    useful = int(mask.sum()) if mask is not None else int(ids.numel())  # padding-free: no pad at all
    return useful, int(ids.numel()), int((batch["labels"] != -100).sum())


def _like_for_like_hf() -> None:
    """PEFT's k-bit preparation minus its fp32 upcast of embeddings / norms / lm_head (Unsloth keeps them
    in the compute dtype): only the input-grad hook gradient checkpointing needs is kept."""
    import peft

    def prepare(model: Any, use_gradient_checkpointing: bool = True, **_: Any) -> Any:
        for p in model.parameters():
            p.requires_grad_(False)
        if use_gradient_checkpointing:
            model.enable_input_require_grads()
        return model

    peft.prepare_model_for_kbit_training = prepare


def _instrument(rec: dict[str, Any]) -> None:
    """Step timer / VRAM reader as an extra callback; token counter around the trainer's collator."""
    from components.finetune import backend_hf, backend_unsloth, core, training

    original_callbacks, original_fit = training.callbacks, training.fit
    original_tokenize = core.tokenize_examples

    def callbacks(ctx: Any) -> list[Any]:
        import torch
        from transformers import TrainerCallback

        cuda = torch.cuda.is_available()

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize()

        class StepTimer(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                sync()
                rec["setup_seconds"] = round(time.perf_counter() - rec["_t0"], 1)
                if cuda:
                    rec["load_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
                    rec["load_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
                    torch.cuda.reset_peak_memory_stats()
                self.t = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                sync()
                now = time.perf_counter()
                rec["step_seconds"].append(now - self.t)
                self.t = now

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                sync()
                if cuda:
                    rec["train_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
                    rec["train_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
                    rec["context_end_gib"] = _context_bytes() / GIB

        return [*original_callbacks(ctx), StepTimer()]

    def fit(trainer: Any, resume_from: Any) -> None:
        collate = trainer.data_collator

        def counting(features: Any) -> Any:
            batch = collate(features)
            rec["micro_batches"].append(useful_tokens(batch))
            return batch

        rec["trainer"] = _trainer_facts(trainer)
        trainer.data_collator = counting
        original_fit(trainer, resume_from)

    def tokenize_examples(*args: Any, **kw: Any) -> Any:
        kept = original_tokenize(*args, **kw)
        if kw.get("source") == "train":
            rec["row_tokens"] = [len(t.input_ids) for _, t in kept]
        return kept

    def no_merge(model: Any, tokenizer: Any, out: Path, eos_tokens: list[str]) -> None:
        (Path(out) / "SKIPPED").write_text("merged save skipped by the GPU benchmark (random weights)\n")

    training.callbacks, training.fit, core.tokenize_examples = callbacks, fit, tokenize_examples
    backend_hf.save_merged = backend_unsloth.save_merged = no_merge


def _trainer_facts(trainer: Any) -> dict[str, Any]:
    """What the like-for-like claim rests on, read off the live trainer."""
    m, a = trainer.model, trainer.args
    cfg = getattr(m, "config", None)
    lora = next((p.dtype for n, p in m.named_parameters() if "lora_A" in n), None)
    head = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    return {
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "optim": str(a.optim),
        "bf16": a.bf16,
        "fp16": a.fp16,
        "packing": getattr(a, "packing", None),
        "padding_free": getattr(a, "padding_free", None),
        "gradient_checkpointing": bool(getattr(a, "gradient_checkpointing", False))
        or bool(getattr(m, "is_gradient_checkpointing", False)),
        "lora_dtype": str(lora),
        "embed_dtype": str(m.get_input_embeddings().weight.dtype),
        "lm_head_dtype": str(head.weight.dtype) if head is not None else None,
        "collator": type(trainer.data_collator).__name__,
        "train_rows_after_packing": len(trainer.train_dataset),
        "trainable_params": sum(p.numel() for p in m.parameters() if p.requires_grad),
    }


def _context_bytes() -> int:
    """Device memory this process uses outside torch's caching allocator (CUDA context, cuBLAS, kernels)."""
    import torch

    free, total = torch.cuda.mem_get_info()
    return total - free - torch.cuda.memory_reserved()


def _cap_memory(rec: dict[str, Any], cap_gib: float) -> None:
    """Cap the allocator so allocator + context stay under `cap_gib` (the context measured once CUDA,
    cuBLAS and a kernel have been initialised; it is measured again after training and reported)."""
    import torch

    x = torch.randn(512, 512, device="cuda")
    (x @ x).sum().item()
    del x
    torch.cuda.empty_cache()
    context = _context_bytes()
    total = torch.cuda.get_device_properties(0).total_memory
    rec["context_start_gib"] = context / GIB
    if cap_gib:
        torch.cuda.set_per_process_memory_fraction((cap_gib * GIB - context) / total)
        rec["cap_gib"] = cap_gib
        rec["allocator_cap_gib"] = round((cap_gib * GIB - context) / GIB, 3)
    torch.cuda.reset_peak_memory_stats()


def _data(task: str, data_dir: Path, work: Path, case: str) -> tuple[Path, Path]:
    """Every row of the sample trains (splits dropped); a 4-row eval file stops the hash holdout."""
    rows = [json.loads(x) for x in (data_dir / f"{task}.jsonl").read_text(encoding="utf-8").splitlines() if x]
    for r in rows:
        r.pop("split", None)
    d = work / "data" / case
    d.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
    (d / "train.jsonl").write_text("".join(lines), encoding="utf-8")
    (d / "eval.jsonl").write_text("".join(lines[:4]), encoding="utf-8")
    return d / "train.jsonl", d / "eval.jsonl"


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    backend, variant, model = parse_case(args.case)
    rec: dict[str, Any] = {
        "case": args.case,
        "backend": backend,
        "variant": variant,
        "model": model,
        "ok": False,
        "step_seconds": [],
        "micro_batches": [],
        "_t0": time.perf_counter(),
    }
    try:
        _run_case(args, backend, variant, model, rec)
        rec["ok"] = True
    except BaseException as exc:  # the parent reports it; other cases still run
        rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        rec["traceback"] = traceback.format_exc()[-6000:]
        traceback.print_exc()
    finally:
        rec.pop("_t0", None)
        rec.update(summarise(rec, args.warmup))
        Path(args.result).write_text(json.dumps(rec, indent=1, default=str), encoding="utf-8")
    return rec


def _run_case(args: argparse.Namespace, backend: str, variant: str, model: str, rec: dict[str, Any]) -> None:
    import torch

    from components.finetune.core import run_finetune

    cuda = torch.cuda.is_available()
    work = Path(args.work)
    if cuda:
        _cap_memory(rec, args.cap_gib if backend == "unsloth" else 0.0)
    recipe = RECIPES[model]
    base = work / "models" / model
    if not (base / ".random-shape").is_file():
        raise SystemExit(f"shape {model} not built under {base} (run the build step first)")
    # adamw_8bit: Unsloth's default, for both backends (bitsandbytes' optimizers need CUDA)
    top: dict[str, Any] = dict(VARIANTS[variant], optim="adamw_8bit" if cuda else None, logging_steps=1)
    if model == "tiny":  # CPU plumbing check: short rows, one micro-batch per step
        top.update(max_seq_length=256, grad_accum=1)
    if not cuda:
        top.pop("precision")
    steps = None if variant == "full" else args.steps
    config = production_config(recipe, base, backend, steps, 0, **top)
    if backend == "hf":
        _like_for_like_hf()
    train, ev = _data(config.task, Path(args.data), work, args.case)
    _instrument(rec)
    out = work / "runs" / args.case
    shutil.rmtree(out, ignore_errors=True)
    rec.update(
        recipe=recipe,
        base_model=str(base),
        versions=versions(),
        device_name=torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        capability=list(torch.cuda.get_device_capability()) if cuda else None,
        config={
            k: getattr(config, k)
            for k in (
                "max_seq_length",
                "per_device_batch_size",
                "grad_accum",
                "gradient_checkpointing",
                "optim",
                "max_steps",
                "num_epochs",
                "packing",
                "precision",
            )
        }
        | {"lora_r": config.lora.r, "load_in_4bit": config.quantization.load_in_4bit},
        shape=json.loads((base / ".random-shape").read_text()),
    )
    result = run_finetune(config, train, ev, out, resume=False)
    s = result.summary
    rec.update(
        resolved_backend=s["backend"],
        steps=s["steps"],
        train_loss=s["train_loss"],
        data=s["data"],
        train_seconds=s["train_seconds"],
        output_dir=str(out),
    )
    if cuda:
        free, total = torch.cuda.mem_get_info()
        rec["device_used_end_gib"] = (total - free) / GIB


def summarise(rec: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Useful tokens per step from the counted micro-batches; steady tokens/s; peaks with context."""
    steps = rec.get("step_seconds", [])
    accum = (rec.get("config") or {}).get("grad_accum") or 1
    mb = rec.pop("micro_batches", [])
    out: dict[str, Any] = {"micro_batches_seen": len(mb)}
    per_step = [mb[i * accum : (i + 1) * accum] for i in range(len(steps))]
    if len(steps) > warmup and all(len(p) == accum for p in per_step):
        steady, toks = steps[warmup:], per_step[warmup:]
        useful = sum(u for p in toks for u, _, _ in p)
        padded = sum(t for p in toks for _, t, _ in p)
        out.update(
            warmup_steps=warmup,
            warmup_seconds=round(sum(steps[:warmup]), 2),
            steady_steps=len(steady),
            steady_step_seconds=round(statistics.median(steady), 3),
            steady_spread=round((max(steady) - min(steady)) / statistics.median(steady), 3),
            useful_tokens_per_step=round(useful / len(steady), 1),
            pad_share=round(1 - useful / padded, 3) if padded else None,
            supervised_tokens_per_step=round(sum(s for p in toks for _, _, s in p) / len(steady), 1),
            useful_tokens_per_s=round(useful / sum(steady), 1),
        )
    rows = rec.pop("row_tokens", None)
    if rows:
        out["train_rows"] = {
            "n": len(rows),
            "total_tokens": sum(rows),
            "mean": round(statistics.mean(rows), 1),
            "max": max(rows),
            "histogram": make_data.histogram(rows),
        }
    peaks = [
        rec.get(k) for k in ("load_peak_reserved_gib", "train_peak_reserved_gib") if rec.get(k) is not None
    ]
    if peaks:
        context = max(rec.get("context_start_gib", 0.0), rec.get("context_end_gib", 0.0))
        out["peak_reserved_gib"] = round(max(peaks), 2)
        out["context_gib"] = round(context, 2)
        out["peak_with_context_gib"] = round(max(peaks) + context, 2)
        out["fits_16gib"] = out["peak_with_context_gib"] < LIMIT_GIB
        out["fits_t4_15360mib"] = out["peak_with_context_gib"] < T4_GIB
    return out


# -------------------------------------------------------------------------------------- parent side
def _child(args: argparse.Namespace, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.finetune_gpu.run", *extra, "--work", str(args.work)]


def build_shapes(args: argparse.Namespace, shapes: list[str], log: Any) -> dict[str, float]:
    """Build each shape as a pre-quantized bnb-4bit dir, in a child process; returns seconds each."""
    took: dict[str, float] = {}
    tokenizers = dict(t.split("=", 1) for t in args.tokenizer)
    for shape in shapes:
        tok = tokenizers.get(FAMILY[shape]) or tokenizers.get("any")
        if not tok:
            raise SystemExit(f"no --tokenizer {FAMILY[shape]}=DIR for shape {shape}")
        t = time.perf_counter()
        cmd = _child(args, "build", "--shape", shape, "--tokenizer", tok)
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
        took[shape] = round(time.perf_counter() - t, 1)
        print(f"built {shape} in {took[shape]} s", flush=True)
    return took


def run_all(args: argparse.Namespace) -> int:
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    cases = (
        args.cases.split(",") if args.cases else (["unsloth-packed-tiny"] if args.smoke else DEFAULT_CASES)
    )
    if args.smoke:
        cases = [c.replace("unsloth-", "hf-") for c in cases]
    results: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cases": {},
        "build_seconds": {},
        "versions": versions(),
    }
    results_path = out / (args.results_name or "results.json")
    deadline = time.monotonic() + args.budget_s
    with open(out / (args.log_name or "log.txt"), "a", encoding="utf-8") as log:
        for case in cases:
            shape = parse_case(case)[2]
            if shape not in results["build_seconds"]:  # each shape just before its first case
                try:
                    results["build_seconds"].update(build_shapes(args, [shape], log))
                except subprocess.CalledProcessError as exc:
                    results["build_seconds"][shape] = f"failed: {exc}"
            results["cases"][case] = _run_one(args, case, work, deadline, log)
            results_path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
            print(_line(case, results["cases"][case]), flush=True)
    results["ratios"] = ratios(results["cases"])
    results["wall_time"] = wall_times(results["cases"])
    results_path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(table(results))
    return 0


def _run_one(args: argparse.Namespace, case: str, work: Path, deadline: float, log: Any) -> dict[str, Any]:
    result_file = work / "results" / f"{case}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if args.skip_done and done.get("ok"):
        return {**done, "from_earlier_call": True}
    left = int(deadline - time.monotonic())
    if left < 45:
        return {"case": case, "ok": False, "error": "not run: time budget spent"}
    cmd = _child(
        args,
        "one",
        "--case",
        case,
        "--result",
        str(result_file),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--data",
        str(args.data),
        "--cap-gib",
        str(args.cap_gib),
    )
    t = time.perf_counter()
    print(f"--- {case}", flush=True)
    log.write(f"\n===== {case}\n")
    log.flush()
    limit = min(args.case_timeout, left)
    try:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
        rec = json.loads(result_file.read_text()) if result_file.is_file() else {"error": "no result"}
    except subprocess.TimeoutExpired:
        rec = {"case": case, "ok": False, "error": f"killed after {limit} s (case timeout or --budget-s)"}
    rec["wall_seconds"] = round(time.perf_counter() - t, 1)
    return rec


def ratios(cases: dict[str, Any]) -> dict[str, Any]:
    """Useful tokens/s of each case over HF + PEFT padded (like for like) of the same shape and run."""
    out: dict[str, Any] = {}
    for model in [*SHAPED, "tiny"]:
        base = cases.get(f"hf-padded-{model}", {}).get("useful_tokens_per_s")
        if not base:
            continue
        out[model] = {
            c.rsplit(f"-{model}", 1)[0]: round(r["useful_tokens_per_s"] / base, 2)
            for c, r in cases.items()
            if c.endswith(f"-{model}") and r.get("useful_tokens_per_s")
        }
        bf, fp = (cases.get(f"unsloth-{v}-{model}", {}) for v in ("packed", "packedfp16"))
        if bf.get("train_loss") and fp.get("train_loss"):
            n = min(len(bf["train_loss"]), len(fp["train_loss"]))
            rel = [
                abs(a - b) / abs(a) for a, b in zip(bf["train_loss"][:n], fp["train_loss"][:n], strict=True)
            ]
            out[model]["fp16_vs_bf16_max_rel_loss_diff"] = round(max(rel), 4)
            out[model]["fp16_loss_finite"] = all(x == x and abs(x) != float("inf") for x in fp["train_loss"])
    return out


def wall_times(cases: dict[str, Any], epochs: int = 2) -> dict[str, Any]:
    """Minutes for the recipe's 2 epochs over the whole sample at each case's steady useful tokens/s,
    plus its measured setup and warm-up (a computation from measured numbers; a `full` case measures it)."""
    out: dict[str, Any] = {}
    for case, r in cases.items():
        rows, tps = r.get("train_rows"), r.get("useful_tokens_per_s")
        if rows and tps:
            train_s = epochs * rows["total_tokens"] / tps
            out[case] = {
                "tokens_2_epochs": epochs * rows["total_tokens"],
                "train_minutes": round(train_s / 60, 2),
                "with_setup_minutes": round(
                    (train_s + r.get("setup_seconds", 0) + r.get("warmup_seconds", 0)) / 60, 2
                ),
            }
        if r.get("variant") == "full" and r.get("train_seconds"):
            out.setdefault(case, {})["measured_train_minutes"] = round(r["train_seconds"] / 60, 2)
    return out


def _line(case: str, r: dict[str, Any]) -> str:
    if not r.get("ok"):
        return f"{case}: FAILED {str(r.get('error', ''))[:300]}"
    return (
        f"{case}: {r.get('useful_tokens_per_s')} useful tok/s ({r.get('useful_tokens_per_step')}/step, pad "
        f"{r.get('pad_share')}), steady {r.get('steady_step_seconds')} s/step, warm-up {r.get('warmup_seconds')} s, "
        f"peak reserved {r.get('peak_reserved_gib')} + context {r.get('context_gib')} GiB, "
        f"loss {[round(x, 3) for x in (r.get('train_loss') or [])][-3:]}"
    )


def table(results: dict[str, Any]) -> str:
    rows = [
        "| case | recipe | seq x batch x accum | rows/step | useful tok/step | pad share | warm-up s | "
        "steady s/step | useful tok/s | peak reserved + context GiB | < 16 GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case, r in results["cases"].items():
        c = r.get("config") or {}
        geo = f"{c.get('max_seq_length')} x {c.get('per_device_batch_size')} x {c.get('grad_accum')}"
        if not r.get("ok"):
            rows.append(
                f"| {case} | {r.get('recipe', '')} | {geo} | failed: {str(r.get('error', ''))[:80]} |||||||"
            )
            continue
        tr = r.get("trainer") or {}
        rows.append(
            f"| {case} | {r.get('recipe')} | {geo} | {tr.get('train_rows_after_packing')} | "
            f"{r.get('useful_tokens_per_step')} | {r.get('pad_share')} | {r.get('warmup_seconds')} | "
            f"{r.get('steady_step_seconds')} | {r.get('useful_tokens_per_s')} | "
            f"{r.get('peak_reserved_gib')} + {r.get('context_gib')} | {r.get('fits_16gib')} |"
        )
    for model, q in results.get("ratios", {}).items():
        rows.append(f"\n{model}: useful tokens/s over hf-padded: {json.dumps(q)}")
    for case, w in results.get("wall_time", {}).items():
        rows.append(f"{case}: 2 epochs over the sample: {json.dumps(w)}")
    return "\n".join(rows)


def build(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.finetune_gpu.shapes import build_random_model, quantize_bnb4

    work = Path(args.work) / "models"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = work / args.shape
    if (out / ".random-shape").is_file():
        print(f"{out} exists")
        return 0
    bf16 = build_random_model(args.shape, work / f"{args.shape}-bf16", args.tokenizer, device=dev)
    if dev == "cuda":  # the form production loads (unsloth/*-bnb-4bit); bitsandbytes quantizes on CUDA only
        quantize_bnb4(bf16, out)
        shutil.rmtree(bf16)
    else:
        bf16.rename(out)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a, o, b = (sub.add_parser(n) for n in ("all", "one", "build"))
    for s in (a, o, b):
        s.add_argument("--work", default=os.environ.get("PRODTUNE_GPU_WORK", "/tmp/prodtune-gpu-work"))
    for s in (a, o):
        s.add_argument("--steps", type=int, default=10, help="optimizer steps per case (max_steps)")
        s.add_argument("--warmup", type=int, default=3, help="steps left out of the steady state")
        s.add_argument("--data", required=True, help="dir with describer.jsonl / qa.jsonl (make_data.py)")
        s.add_argument(
            "--cap-gib", type=float, default=LIMIT_GIB, help="Unsloth cases: allocator + context cap"
        )
    a.add_argument("--out", required=True)
    a.add_argument("--cases", default="", help=f"comma list; default {','.join(DEFAULT_CASES)}")
    a.add_argument("--tokenizer", action="append", default=[], help="FAMILY=DIR (qwen2.5, llama3.2, any)")
    a.add_argument("--case-timeout", type=int, default=240)
    a.add_argument("--budget-s", type=int, default=3600, help="stop starting/kill cases after this many s")
    a.add_argument(
        "--skip-done", action="store_true", help="reuse ok results of an earlier call (same --work)"
    )
    a.add_argument("--smoke", action="store_true", help="CPU plumbing check on a tiny 2-layer shape (hf)")
    a.add_argument("--results-name", default="")
    a.add_argument("--log-name", default="")
    b.add_argument("--shape", required=True)
    b.add_argument("--tokenizer", required=True)
    o.add_argument("--case", required=True)
    o.add_argument("--result", required=True)
    args = p.parse_args(argv)
    if args.cmd == "build":
        return build(args)
    if args.cmd == "one":
        return 0 if run_case(args).get("ok") else 1
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
