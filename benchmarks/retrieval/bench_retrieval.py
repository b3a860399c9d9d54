"""Embedded store query latency (p50/p95) and recall@10 of the IVF index against exact search.

Vectors are generated (384-d, unit length, clustered like sentence embeddings: a topic centre plus
noise), at 100k and 1.2M rows. Exact search over the same store is the baseline measured in the
same run; recall@10 = |IVF top-10 ∩ exact top-10| / 10, averaged over held-out queries drawn from
the same distribution.

    nice -n 10 python benchmarks/retrieval/bench_retrieval.py [--sizes 100000 1200000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from serving.retrieval.embedded import EmbeddedStore

DIM = 384


def topic_centres(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level topics, like a catalogue: 64 departments, and n/5 products families whose centre is
    their department's direction plus a larger random part (weight 2.5). Families overlap, neighbours
    come from several families and IVF lists cut across them: without the random part k-means would
    recover the departments and any nprobe would give recall 1.0, which real embeddings never do."""
    departments = rng.normal(size=(64, DIM)).astype(np.float32)
    departments /= np.linalg.norm(departments, axis=1, keepdims=True)
    n_sub = max(100, n // 5)
    sub = departments[rng.integers(0, 64, n_sub)] + rng.normal(scale=2.5 / np.sqrt(DIM), size=(n_sub, DIM))
    return (sub / np.linalg.norm(sub, axis=1, keepdims=True)).astype(np.float32)


def generate(n: int, centres: np.ndarray, seed: int, noise: float = 0.04, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around the family centres (nearest-neighbour cosine about 0.65, as MiniLM gives
    for related product texts)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(0, len(centres), m)] + rng.normal(scale=noise, size=(m, DIM)).astype(
            np.float32
        )
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def pct(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


def timed_searches(store: EmbeddedStore, queries: np.ndarray, **kwargs: object) -> tuple[list, list, list]:
    """Top-10 uids, wall ms and CPU ms per query. Queries run on one BLAS thread (as one request
    of a serving worker would), so CPU time is the whole cost; on a shared machine the wall-clock
    tail also holds time the scheduler gave to other processes."""
    tops, wall, cpu = [], [], []
    with threadpool_limits(1):
        for q in queries:
            t, c = time.perf_counter(), time.thread_time()
            hits = store.search(q, k=10, **kwargs)  # type: ignore[arg-type]
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
            tops.append({h.uid for h in hits})
    return tops, wall, cpu


def run_size(n: int, n_queries: int, nprobes: list[int], seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    centres = topic_centres(n, rng)
    data = generate(n, centres, seed + 1)
    queries = generate(n_queries, centres, seed + 2)
    # How hard the set is: the cosine of each query's true nearest neighbour.
    nn_cos = [float(np.max(data @ q)) for q in queries[:50]]

    store = EmbeddedStore(DIM)
    # Metadata is irrelevant to latency; uids are the row numbers so results can be compared.
    store.uids = [str(i) for i in range(n)]
    store.titles = store.contents = [""] * n
    store._vectors = data

    exact_top, exact_ms, exact_cpu = timed_searches(store, queries, exact=True)

    t = time.perf_counter()
    store.build_index(progress=True)
    build_s = time.perf_counter() - t

    result: dict[str, object] = {
        "vectors": n,
        "dim": DIM,
        "queries": n_queries,
        "nearest_neighbour_cosine_p50": round(float(np.median(nn_cos)), 3),
        "exact_ms": pct(exact_ms),
        "exact_cpu_ms": pct(exact_cpu),
        "ivf_nlist": store.ivf.nlist if store.ivf else 0,
        "ivf_build_seconds": round(build_s, 1),
        "ivf": [],
    }
    for nprobe in nprobes:
        store.nprobe = nprobe
        tops, ms, cpu = timed_searches(store, queries)
        recalls = [len(top & truth) / 10 for top, truth in zip(tops, exact_top, strict=True)]
        lat = pct(ms)
        result["ivf"].append(  # type: ignore[union-attr]
            {
                "nprobe": nprobe,
                **{f"ms_{k}": v for k, v in lat.items()},
                **{f"cpu_ms_{k}": v for k, v in pct(cpu).items()},
                "recall_at_10": round(float(np.mean(recalls)), 4),
                "speedup_p50_vs_exact": round(result["exact_ms"]["p50"] / lat["p50"], 1),  # type: ignore[index]
            }
        )
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_200_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = ap.parse_args()
    results = [run_size(n, args.queries, args.nprobe, args.seed) for n in args.sizes]
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
