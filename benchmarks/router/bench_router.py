"""Router classification latency (p50/p95/p99) over the labelled set, without the LLM fallback.

Baseline measured in the same run: encoding the same inputs with all-MiniLM-L6-v2 (what an
embedding-based head would pay per query before any classification), reported as a ratio.

    python benchmarks/router/bench_router.py [--repeats 20] [--no-embedding-baseline] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from serving.config import ServingSettings
from serving.router.classifier import DEFAULT_TRAIN_PATH, RouterClassifier
from serving.router.examples import load_examples

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "tests" / "data" / "router_labelled.jsonl"


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {f"p{p}": round(float(np.percentile(a, p)), 4) for p in (50, 95, 99)} | {"n": len(a)}


def time_each(fn, texts: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this thread) milliseconds per call. On a shared machine the wall-clock tail
    includes time the scheduler gave to other processes; the CPU time does not."""
    wall, cpu = [], []
    for _ in range(repeats):
        for t in texts:
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn(t)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-embedding-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = ap.parse_args()

    examples = load_examples(EVAL)
    texts = [e.text for e in examples]
    start = time.perf_counter()
    clf = RouterClassifier.from_path(DEFAULT_TRAIN_PATH)
    train_s = time.perf_counter() - start
    clf.classify(texts[0])  # warm-up
    wall, cpu = time_each(clf.classify, texts, args.repeats)
    result: dict[str, object] = {
        "inputs": len(texts),
        "head_train_seconds": round(train_s, 3),
        "classify_ms": percentiles(wall),
        "classify_cpu_ms": percentiles(cpu),
        "accuracy": round(sum(clf.classify(e.text).route == e.route for e in examples) / len(examples), 4),
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
    }
    if not args.no_embedding_baseline:
        from serving.retrieval.embedder import SentenceEmbedder

        emb = SentenceEmbedder(ServingSettings().embedding_model_path)
        emb.encode(texts[:8])  # warm-up
        # A subset: one encode costs ~1000x a classification, and the ratio is what matters here.
        base_wall, base_cpu = time_each(lambda t: emb.encode([t]), texts[:: max(1, len(texts) // 60)], 1)
        result["minilm_encode_ms"] = percentiles(base_wall)
        result["minilm_encode_cpu_ms"] = percentiles(base_cpu)
        result["p95_ratio_minilm_over_classifier"] = round(
            result["minilm_encode_ms"]["p95"] / result["classify_ms"]["p95"], 1
        )
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
