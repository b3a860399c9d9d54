"""GPU fine-tune benchmark: Unsloth QLoRA vs transformers + PEFT + bitsandbytes nf4, same card, same run.

    source scripts/gpu/bootstrap.sh                                   # on the GPU host (docs/gpu.md)
    python -m benchmarks.finetune_gpu.run all --out $OUT              # shaped 7B + 3B, both backends
    python -m benchmarks.finetune_gpu.run all --out $OUT --cases unsloth-smollm2,hf-smollm2
    python -m benchmarks.finetune_gpu.run all --out /tmp/o --smoke    # CPU plumbing check (tiny shape)

Every case is the project's own training function, `components.finetune.core.run_finetune`, with the
production recipe (`pipelines/configs/describer.yaml` for the Qwen2.5-7B shape, `qa.yaml` for the
Llama-3.2-3B shape and the real SmolLM2), overriding only: base_model (a local dir), the dataset, max_steps,
eval.max_examples, and `backend` (unsloth, or hf for the baseline). Each case runs in its own process so
peak-memory counters and the CUDA allocator start clean. Instrumentation is added from outside: a
TrainerCallback appended to `components.finetune.training.callbacks` times each optimizer step
(synchronised) and reads `torch.cuda.max_memory_allocated/reserved` at train begin (= load peak, then
reset) and train end. Shaped runs skip `save_merged` (16-bit merge of random weights measures disk).

Tokens/s = tokens per optimizer step (batch x grad_accum x max_seq_length: every benchmark row is cut to
exactly max_seq_length by the training function, checked via the summary's `truncated` count) over the
median seconds of the steady-state steps (after `--warmup` steps, whose time, Unsloth's compile
included, is reported separately).
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
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.finetune_gpu import data as bench_data  # noqa: E402
from benchmarks.finetune_gpu.shapes import RECIPES  # noqa: E402

GIB = 1024**3
LIMIT_GIB = 16.0  # the mission's card: 16 GB
SHAPED = ["llama-3.2-3b", "qwen2.5-7b"]
DEFAULT_CASES = [f"{b}-{s}" for s in SHAPED for b in ("unsloth", "hf")]
SMOL = "smollm2"
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


def parse_case(case: str) -> tuple[str, str]:
    backend, _, model = case.partition("-")
    if backend not in ("unsloth", "hf") or model not in [*SHAPED, SMOL, "tiny"]:
        raise SystemExit(f"unknown case {case!r}")
    return backend, model


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
    recipe: str, base_model: Path, backend: str, max_steps: int, eval_examples: int, **top: Any
):
    """The production YAML with only the benchmark's overrides (see module docstring)."""
    from components.common.config import CONFIG_DIR, load_config
    from components.finetune.core import FinetuneConfig

    data = load_config(FinetuneConfig, CONFIG_DIR / recipe).model_dump()
    data.update(base_model=str(base_model), backend=backend, max_steps=max_steps, **top)
    data["eval"] = {**data["eval"], "max_examples": eval_examples}
    return FinetuneConfig.model_validate(data)


def _instrument(rec: dict[str, Any], skip_merge: bool) -> None:
    """Append a step timer / VRAM reader to the trainer's callbacks; optionally skip the merged save."""
    from components.finetune import backend_hf, backend_unsloth, core, training

    original_callbacks = training.callbacks
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
                    rec["load_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
                    rec["load_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
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
                    rec["train_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
                    rec["train_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
                    torch.cuda.reset_peak_memory_stats()

        return [*original_callbacks(ctx), StepTimer()]

    def tokenize_examples(*args: Any, **kw: Any) -> Any:
        kept = original_tokenize(*args, **kw)
        rec["row_tokens"].setdefault(kw.get("source", "?"), []).extend(len(t.input_ids) for _, t in kept)
        return kept

    def no_merge(model: Any, tokenizer: Any, out: Path, eos_tokens: list[str]) -> None:
        (Path(out) / "SKIPPED").write_text("merged save skipped by the GPU benchmark (random weights)\n")

    training.callbacks = callbacks
    core.tokenize_examples = tokenize_examples
    if skip_merge:
        backend_hf.save_merged = no_merge
        backend_unsloth.save_merged = no_merge


def _base_model(model: str, work: Path, tokenizer: Path | None) -> Path:
    if model == SMOL:
        from components.finetune.materialize import DEFAULT_GGUF, DEFAULT_OUTPUT, materialize

        return materialize(DEFAULT_GGUF, DEFAULT_OUTPUT)
    d = work / "models" / model
    if not (d / ".random-shape").is_file():
        raise SystemExit(f"shape {model} not built under {d} (run the build step first)")
    return d


def _dataset(
    model: str, task: str, work: Path, case: str, max_len: int, rows: int
) -> tuple[Path, Path | None]:
    d = work / "data" / case
    if model == SMOL:
        train = bench_data.write_jsonl(d / f"{task}-train.jsonl", bench_data.describer_rows(rows))
        ev = bench_data.write_jsonl(d / f"{task}-eval.jsonl", bench_data.describer_rows(16, "eval", 1000))
        return train, ev
    return bench_data.write_jsonl(
        d / f"{task}-train.jsonl", bench_data.full_length_rows(task, rows, max_len)
    ), None


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    backend, model = parse_case(args.case)
    rec: dict[str, Any] = {
        "case": args.case,
        "backend": backend,
        "model": model,
        "ok": False,
        "step_seconds": [],
        "row_tokens": {},
        "_t0": time.perf_counter(),
    }
    try:
        _run_case(args, backend, model, rec)
        rec["ok"] = True
    except BaseException as exc:  # the parent reports it; other cases still run
        rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        rec["traceback"] = traceback.format_exc()[-6000:]
        traceback.print_exc()
    finally:
        rec.pop("_t0", None)
        rec.update(_summarise(rec, args.warmup))
        Path(args.result).write_text(json.dumps(rec, indent=1, default=str), encoding="utf-8")
    return rec


def _run_case(args: argparse.Namespace, backend: str, model: str, rec: dict[str, Any]) -> None:
    import torch

    from components.finetune.core import run_finetune

    work = Path(args.work)
    smoke = model == "tiny"
    recipe = "describer.yaml" if model == SMOL else RECIPES.get(model, "qa.yaml")
    base = _base_model(model, work, None)
    top: dict[str, Any] = {"max_seq_length": 256, "grad_accum": 1} if smoke else {}
    if args.cap_gib and torch.cuda.is_available():
        # Emulate a smaller card: the allocator refuses to go past the cap (CUDA context not included).
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * GIB / total))
        rec["cap_gib"] = args.cap_gib
    eval_n = args.eval_examples if model == SMOL else 0
    config = production_config(recipe, base, backend, args.steps, eval_n, **top)
    train, ev = _dataset(model, config.task, work, args.case, config.max_seq_length, args.rows)
    _instrument(rec, skip_merge=model != SMOL)
    out = work / "runs" / args.case
    shutil.rmtree(out, ignore_errors=True)
    rec.update(
        recipe=recipe,
        base_model=str(base),
        versions=versions(),
        device_name=torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else platform.processor() or "cpu",
        config={
            k: getattr(config, k)
            for k in (
                "max_seq_length",
                "per_device_batch_size",
                "grad_accum",
                "gradient_checkpointing",
                "optim",
                "max_steps",
            )
        }
        | {"lora_r": config.lora.r, "load_in_4bit": config.quantization.load_in_4bit},
    )
    shape_file = base / ".random-shape"
    if shape_file.is_file():
        rec["params"] = json.loads(shape_file.read_text())["params"]
    result = run_finetune(config, train, ev, out, resume=False)
    s = result.summary
    rec.update(
        resolved_backend=s["backend"],
        steps=s["steps"],
        train_loss=s["train_loss"],
        train_loss_steps=s["train_loss_steps"],
        data=s["data"],
        train_seconds=s["train_seconds"],
        eval=result.eval if model == SMOL else None,
        output_dir=str(out),
    )
    if torch.cuda.is_available():
        rec["post_train_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        rec["post_train_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    if model == SMOL:
        rec["lora_b_abs_mean"] = _lora_b_abs_mean(out / "adapter")


def _lora_b_abs_mean(adapter: Path) -> float:
    """LoRA B starts at zero: a non-zero mean shows the adapter was trained."""
    from safetensors.torch import load_file

    w = load_file(str(adapter / "adapter_model.safetensors"))
    b = [t.float().abs().mean().item() for k, t in w.items() if "lora_B" in k]
    return sum(b) / len(b) if b else 0.0


def _summarise(rec: dict[str, Any], warmup: int) -> dict[str, Any]:
    steps = rec.get("step_seconds", [])
    cfg = rec.get("config") or {}
    out: dict[str, Any] = {}
    if len(steps) > warmup:
        steady = steps[warmup:]
        out["warmup_steps"] = warmup
        out["warmup_seconds"] = round(sum(steps[:warmup]), 2)
        out["steady_step_seconds"] = round(statistics.median(steady), 3)
        out["steady_spread"] = round((max(steady) - min(steady)) / statistics.median(steady), 3)
        rows = rec.get("row_tokens", {}).get("train", [])
        rows_per_step = cfg.get("per_device_batch_size", 0) * cfg.get("grad_accum", 0)
        full = bool(rows) and all(n == cfg.get("max_seq_length") for n in rows)
        mean_row = statistics.mean(rows) if rows else 0.0
        out["rows_full_length"] = full
        out["tokens_per_step"] = round(rows_per_step * mean_row, 1)
        out["tokens_per_s"] = round(out["tokens_per_step"] / out["steady_step_seconds"], 1)
    peaks_r = [rec.get(k) for k in ("load_peak_reserved_gib", "train_peak_reserved_gib")]
    peaks_a = [rec.get(k) for k in ("load_peak_allocated_gib", "train_peak_allocated_gib")]
    if any(p is not None for p in peaks_r):
        out["peak_reserved_gib"] = round(max(p for p in peaks_r if p is not None), 2)
        out["peak_allocated_gib"] = round(max(p for p in peaks_a if p is not None), 2)
        out["fits_16gib"] = out["peak_reserved_gib"] < LIMIT_GIB
    rows = rec.pop("row_tokens", {}).get("train", [])
    if rows:
        out["train_row_tokens"] = {"n": len(rows), "min": min(rows), "max": max(rows)}
    return out


# -------------------------------------------------------------------------------------- parent side
def build_shapes(args: argparse.Namespace, shapes: list[str], log: Any) -> dict[str, float]:
    """Build each random-weight shape in a child process (on CUDA when present); returns seconds each."""
    took: dict[str, float] = {}
    for shape in shapes:
        t = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.finetune_gpu.run",
            "build",
            "--shape",
            shape,
            "--work",
            str(args.work),
            "--tokenizer",
            args.tokenizer,
        ]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
        took[shape] = round(time.perf_counter() - t, 1)
        print(f"built {shape} in {took[shape]} s", flush=True)
    return took


def run_all(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    cases = args.cases.split(",") if args.cases else (["hf-tiny"] if args.smoke else DEFAULT_CASES)
    shapes = sorted({parse_case(c)[1] for c in cases} - {SMOL}, key=lambda s: ["tiny", *SHAPED].index(s))
    results: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cases": {}}
    results_path = out / (args.results_name or "results.json")
    deadline = time.monotonic() + args.budget_s
    with open(out / (args.log_name or "log.txt"), "a", encoding="utf-8") as log:
        try:
            results["build_seconds"] = build_shapes(args, shapes, log)
        except subprocess.CalledProcessError as exc:
            results["build_error"] = str(exc)
        for case in cases:
            result_file = work / "results" / f"{case}.json"
            result_file.parent.mkdir(parents=True, exist_ok=True)
            done = json.loads(result_file.read_text()) if result_file.is_file() else {}
            if args.skip_done and done.get("ok"):
                results["cases"][case] = {**done, "from_earlier_call": True}
                print(_line(case, done) + " (earlier call)", flush=True)
                continue
            left = int(deadline - time.monotonic())
            if left < 60:
                results["cases"][case] = {"case": case, "ok": False, "error": "not run: time budget spent"}
                continue
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.finetune_gpu.run",
                "one",
                "--case",
                case,
                "--work",
                str(work),
                "--result",
                str(result_file),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--rows",
                str(args.rows),
                "--eval-examples",
                str(args.eval_examples),
            ]
            t = time.perf_counter()
            print(f"--- {case}", flush=True)
            log.write(f"\n===== {case}\n")
            log.flush()
            limit = min(args.case_timeout, left)
            try:
                subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
                rec = json.loads(result_file.read_text()) if result_file.is_file() else {"error": "no result"}
            except subprocess.TimeoutExpired:
                rec = {
                    "case": case,
                    "ok": False,
                    "error": f"killed after {limit} s (case timeout or --budget-s)",
                }
            rec["wall_seconds"] = round(time.perf_counter() - t, 1)
            results["cases"][case] = rec
            if args.adapter_to and rec.get("ok") and parse_case(case)[1] == SMOL:
                _pack_adapter(Path(rec["output_dir"]), out / f"{case}-adapter.tgz")
            results_path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
            print(_line(case, rec), flush=True)
    results["ratios"] = ratios(results["cases"])
    results_path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(table(results))
    return 0


def _pack_adapter(run_dir: Path, dest: Path) -> None:
    """adapter/ + summary + eval + loss plot: what the CPU side needs to merge and export (a few MB)."""
    with tarfile.open(dest, "w:gz") as tar:
        for name in ("adapter", "finetune-summary.json", "eval.json", "eval-table.md", "loss.png"):
            if (run_dir / name).exists():
                tar.add(run_dir / name, arcname=name)


def ratios(cases: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in [*SHAPED, SMOL, "tiny"]:
        u, h = cases.get(f"unsloth-{model}", {}), cases.get(f"hf-{model}", {})
        if u.get("tokens_per_s") and h.get("tokens_per_s"):
            out[model] = {
                "tokens_per_s": round(u["tokens_per_s"] / h["tokens_per_s"], 2),
                "peak_reserved": round(u["peak_reserved_gib"] / h["peak_reserved_gib"], 2)
                if u.get("peak_reserved_gib") and h.get("peak_reserved_gib")
                else None,
            }
    return out


def _line(case: str, r: dict[str, Any]) -> str:
    if not r.get("ok"):
        return f"{case}: FAILED {r.get('error', '')[:300]}"
    return (
        f"{case}: {r.get('tokens_per_s')} tok/s, steady {r.get('steady_step_seconds')} s/step, "
        f"warm-up {r.get('warmup_seconds')} s, peak alloc {r.get('peak_allocated_gib')} GiB, "
        f"reserved {r.get('peak_reserved_gib')} GiB, loss {r.get('train_loss')}"
    )


def table(results: dict[str, Any]) -> str:
    rows = [
        "| case | card | recipe | seq x batch x accum | warm-up s | steady s/step | tokens/s | "
        "peak alloc GiB | peak reserved GiB | < 16 GiB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for case, r in results["cases"].items():
        c = r.get("config") or {}
        geo = f"{c.get('max_seq_length')} x {c.get('per_device_batch_size')} x {c.get('grad_accum')}"
        if not r.get("ok"):
            rows.append(
                f"| {case} | {r.get('device_name', '')} | {r.get('recipe', '')} | {geo} | failed: "
                f"{str(r.get('error', ''))[:80]} | | | | | |"
            )
            continue
        rows.append(
            f"| {case} | {r.get('device_name')} | {r.get('recipe')} | {geo} | {r.get('warmup_seconds')} | "
            f"{r.get('steady_step_seconds')} | {r.get('tokens_per_s')} | {r.get('peak_allocated_gib')} | "
            f"{r.get('peak_reserved_gib')} | {_fits(r)} |"
        )
    for model, q in results.get("ratios", {}).items():
        rows.append(
            f"\n{model}: Unsloth / HF+PEFT tokens/s = {q['tokens_per_s']}x, peak reserved ratio "
            f"{q['peak_reserved']}"
        )
    return "\n".join(rows)


def _fits(r: dict[str, Any]) -> str:
    return "n/a" if r.get("fits_16gib") is None else ("yes" if r["fits_16gib"] else "NO")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("all", "one"):
        s = sub.add_parser(name)
        s.add_argument("--work", default=os.environ.get("PRODTUNE_GPU_WORK", "/tmp/prodtune-gpu-work"))
        s.add_argument("--steps", type=int, default=8, help="optimizer steps per case (max_steps)")
        s.add_argument("--warmup", type=int, default=2, help="steps left out of the steady-state median")
        s.add_argument("--rows", type=int, default=64, help="training rows written per case")
        s.add_argument("--eval-examples", type=int, default=8, help="held-out rows scored (SmolLM2 only)")
    a, o = sub.choices["all"], sub.choices["one"]
    a.add_argument("--out", required=True)
    a.add_argument("--cases", default="", help=f"comma list; default {','.join(DEFAULT_CASES)}")
    a.add_argument(
        "--tokenizer",
        default=os.environ.get("PRODTUNE_GPU_TOKENIZER", ""),
        help="tokenizer dir for the random shapes (SmolLM2's)",
    )
    a.add_argument("--case-timeout", type=int, default=240)
    a.add_argument("--budget-s", type=int, default=3600, help="stop starting/kill cases after this many s")
    a.add_argument(
        "--skip-done", action="store_true", help="reuse ok results of an earlier call (same --work)"
    )
    a.add_argument("--smoke", action="store_true", help="CPU plumbing check on a tiny 2-layer shape")
    a.add_argument("--adapter-to", action="store_true", help="pack the SmolLM2 adapter into --out")
    a.add_argument("--results-name", default="")
    a.add_argument("--log-name", default="")
    b = sub.add_parser("build", help="write one random-weight shape under WORK/models (on CUDA if present)")
    b.add_argument("--shape", required=True)
    b.add_argument("--work", default=os.environ.get("PRODTUNE_GPU_WORK", "/tmp/prodtune-gpu-work"))
    b.add_argument("--tokenizer", default=os.environ.get("PRODTUNE_GPU_TOKENIZER", ""))
    o.add_argument("--case", required=True)
    o.add_argument("--result", required=True)
    o.add_argument("--cap-gib", type=float, default=0.0, help="limit the CUDA allocator to this many GiB")
    args = p.parse_args(argv)
    if args.cmd == "build":
        import torch

        from benchmarks.finetune_gpu.shapes import build_random_model

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        print(
            build_random_model(
                args.shape, Path(args.work) / "models" / args.shape, args.tokenizer, device=dev
            )
        )
        return 0
    if args.cmd == "one":
        return 0 if run_case(args).get("ok") else 1
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
