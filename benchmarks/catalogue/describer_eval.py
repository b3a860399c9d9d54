"""Does the generated catalogue teach the describer? Base vs fine-tuned on the demo's data path, CPU.

    nice -n 10 python benchmarks/catalogue/describer_eval.py [--products 40] [--max-steps N] [--config ...]

gen-data (5,000 lines, seed 0, as `prodtune demo`) -> prep -> sampling (pipelines/configs/local/
sampling.yaml: n, seed, eval share) -> the describer rows the synthesis step writes for every sampled
product (`chat_format.describer_messages`, no teacher needed) -> `prodtune finetune` with the local
describer recipe on SmolLM2-135M-Instruct. The baseline is the base model, evaluated in the same
run on the same held-out rows with the same decoding (components/finetune/evaluate.py).

Writes benchmarks/catalogue/describer-results.json (the eval table, steps, seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent


def describer_rows(tmp: Path, products: int | None) -> tuple[Path, Path, dict]:
    import pandas as pd
    import yaml

    from components.common import chat_format
    from components.prep.core import PrepConfig, run_prep
    from components.prep.sample_data import generate_trn
    from components.sampling.core import SamplingConfig, sample_catalogue

    recipe = yaml.safe_load((ROOT / "pipelines/configs/local/sampling.yaml").read_text())
    n = products or recipe["n"]
    generate_trn(tmp / "trn.json.gz", 5000, seed=0)
    run_prep(tmp / "trn.json.gz", tmp / "prep", PrepConfig(), progress=False)
    cfg = SamplingConfig(n=n, seed=recipe["seed"], eval_fraction=recipe["eval_fraction"])
    sample_catalogue(tmp / "prep", tmp / "sample", cfg)
    frame = pd.read_parquet(tmp / "sample" / f"data-{n}.parquet")
    paths = {}
    for split in ("train", "eval"):
        rows = frame[frame["split"] == split]
        paths[split] = tmp / f"describer-{split}.jsonl"
        with open(paths[split], "w", encoding="utf-8") as fh:
            for r in rows.itertuples():
                messages = chat_format.describer_messages(r.title, r.content)
                fh.write(
                    json.dumps({"messages": messages, "uid": r.uid, "split": split}, ensure_ascii=False)
                    + "\n"
                )
    return paths["train"], paths["eval"], {"products": n, "train": int((frame.split == "train").sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=None, help="default: the local sampling recipe's n")
    ap.add_argument("--config", default="pipelines/configs/local/describer.yaml")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--out", default=str(HERE / "describer-results.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="describer-") as tmp_name:
        tmp = Path(tmp_name)
        train, evals, counts = describer_rows(tmp, args.products)
        cmd = [sys.executable, "-m", "pipelines.cli", "finetune", "--config", args.config, "--train", str(train),
               "--eval", str(evals), "--output-dir", str(tmp / "ft")]  # fmt: skip
        if args.max_steps:
            cmd += ["--max-steps", str(args.max_steps)]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        started = time.monotonic()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})
        seconds = time.monotonic() - started
        result = json.loads((tmp / "ft" / "eval.json").read_text())
    out = {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
        "config": args.config,
        "max_steps": args.max_steps,
        **counts,
        "seconds": round(seconds, 1),
        "eval": result,
    }
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: out[k] for k in ("products", "train", "seconds")} | {
        "base": result.get("base"), "finetuned": result.get("finetuned")}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
