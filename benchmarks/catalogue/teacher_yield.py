"""Synthesis yield on the embedded teacher (llama-cpp-python's server on SmolLM2-135M, CPU).

    nice -n 10 python benchmarks/catalogue/teacher_yield.py [--products 40] [--baseline-products 20]

The demo's data path: `gen-data` (5,000 lines, seed 0) -> prep -> sampling (n products, seed 42,
20% eval, as pipelines/configs/local/sampling.yaml) -> synthesis with the local config
(pipelines/configs/local/synthesis.yaml) against a real TeacherServer. Baseline in the same run,
same products (the first --baseline-products of them): the previous local recipe, prompt qa_v1 with
2 pairs per request and no regeneration. The grounding filter is the same for both (quality.py,
min_support 0.6). Each run starts from an empty reply cache, so every reply is a real call.

Writes benchmarks/catalogue/yield-results.json; the numbers go into docs/synthesis.md by hand
(with the examples), since a run takes minutes of a shared CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

BASELINE = {
    "prompt": "qa_v1",
    "pairs_per_product": 2,
    "max_tokens": 200,
    "max_replies": 2,
    "regenerate_ungrounded": False,
}


def sample(tmp: Path, products: int) -> Path:
    from components.prep.core import PrepConfig, run_prep
    from components.prep.sample_data import generate_trn
    from components.sampling.core import SamplingConfig, sample_catalogue

    generate_trn(tmp / "trn.json.gz", 5000, seed=0)
    run_prep(tmp / "trn.json.gz", tmp / "prep", PrepConfig(), progress=False)
    sample_catalogue(tmp / "prep", tmp / "sample", SamplingConfig(n=products, seed=42, eval_fraction=0.2))
    return tmp / "sample" / f"data-{products}.parquet"


def run_one(
    name: str, inp: Path, out: Path, teacher: Any, overrides: dict[str, Any], cache: Path | None = None
) -> dict[str, Any]:
    from components.common.config import load_config
    from components.synthesis.core import SynthesisConfig, run_synthesis

    cfg = load_config(SynthesisConfig, ROOT / "pipelines/configs/local/synthesis.yaml", {
        **overrides, "base_url": teacher.base_url, "cache_dir": cache or out / "cache"})  # fmt: skip
    started = time.monotonic()
    summary = run_synthesis(cfg, inp, out, environ=teacher.env(), progress=False)
    seconds = time.monotonic() - started
    qa = [json.loads(line) for line in (out / "dados-fine-tunning.jsonl").read_text().splitlines()]
    dropped = [json.loads(line) for line in (out / "dropped-pairs.jsonl").read_text().splitlines()]
    result = {
        "name": name,
        "config": {
            k: getattr(cfg, k)
            for k in (
                "prompt",
                "pairs_per_product",
                "max_tokens",
                "max_replies",
                "regenerate_ungrounded",
                "min_support",
                "temperature",
            )
        },
        "products": summary["products"],
        "with_pairs": summary["with_pairs"],
        "yield": round(summary["with_pairs"] / summary["products"], 3),
        "pairs": summary["pairs"],
        "quarantined": summary["quarantined"],
        "requests": summary["requests"],
        "format_mode": summary["format_mode"],
        "tokens": summary["tokens"],
        "seconds": round(seconds, 1),
        "seconds_per_product": round(seconds / max(summary["products"], 1), 1),
        "examples": [
            r["messages"][1]["content"].rsplit("Question: ", 1)[-1] + " -> " + r["messages"][-1]["content"]
            for r in qa[:6]
        ],
        "dropped_examples": dropped[:4],
    }
    print(
        json.dumps({k: result[k] for k in ("name", "with_pairs", "products", "yield", "pairs", "seconds")}),
        flush=True,
    )
    return result


def main() -> None:
    from pipelines.embedded.teacher import TeacherServer, default_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=40)
    ap.add_argument("--baseline-products", type=int, default=20, help="0: skip the qa_v1 baseline")
    ap.add_argument("--limit", type=int, default=None, help="ask about the first N sampled products only")
    ap.add_argument("--cache-dir", type=Path, default=None, help="reuse replies of an interrupted run")
    args = ap.parse_args()
    results: dict[str, Any] = {"measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "machine": f"{platform.machine()}, Python {platform.python_version()}"}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="yield-") as tmp_name,
        TeacherServer(default_model_path(), log_path=Path(tmp_name) / "teacher.log") as teacher,
    ):
        tmp = Path(tmp_name)
        inp = sample(tmp, args.products)
        if args.limit:
            import pandas as pd

            limited = tmp / f"data-{args.limit}-of-{args.products}.parquet"
            pd.read_parquet(inp).head(args.limit).to_parquet(limited)
            inp = limited
        results["v2"] = run_one("local recipe (qa_v2)", inp, tmp / "v2", teacher, {}, args.cache_dir)
        if args.baseline_products:
            import pandas as pd

            base_inp = tmp / f"data-{args.baseline_products}.parquet"
            pd.read_parquet(inp).head(args.baseline_products).to_parquet(base_inp)
            results["v1"] = run_one("previous recipe (qa_v1)", base_inp, tmp / "v1", teacher, BASELINE)
    (HERE / "yield-results.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
