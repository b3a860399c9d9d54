"""ANN libraries behind `EmbeddedStore`: build time, memory, query latency (p50/p95) and recall@10.

Vectors are generated (384-d, unit length, clustered like sentence embeddings: a topic centre plus
noise), at 100k and 1.2M rows, or read from a file of real embeddings (`--vectors X.npy --queries
Q.npy`, e.g. MiniLM embeddings of a generated catalogue from benchmarks/indexing). Exact search over
the same store is the baseline measured in the same run; recall@10 = |ANN top-10 ∩ exact top-10| / 10,
averaged over held-out queries. Every search goes through `EmbeddedStore.search` (candidates from
the index, re-scored exactly), on one thread.

Each (size, library) runs in its own process, one at a time, so its memory is its own: the parent
samples the child's RSS and stops it past `--max-rss-gib` or `--max-seconds`, and records why.

    nice -n 10 python benchmarks/retrieval/bench_retrieval.py [--sizes 100000 1200000] \\
        [--libraries usearch hnswlib faiss] [--ef 32 64 128 256] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from components.common.retrieval.ann import DISTRIBUTIONS, HNSWParams, available
from components.common.retrieval.embedded import EmbeddedStore

DIM = 384
LIBRARIES = ("usearch", "hnswlib", "faiss")


def topic_centres(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level topics, like a catalogue: 64 departments, and n/5 products families whose centre is
    their department's direction plus a larger random part (weight 2.5). Families overlap, neighbours
    come from several families: without the random part any index would find the departments and
    reach recall 1.0, which real embeddings never give."""
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


def dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    if args.vectors:
        data = np.load(args.vectors).astype(np.float32)
        queries = np.load(args.queries).astype(np.float32)[: args.n_queries]
        return data, queries, f"real:{Path(args.vectors).name}"
    rng = np.random.default_rng(args.seed)
    centres = topic_centres(args.size, rng)
    return (
        generate(args.size, centres, args.seed + 1),
        generate(args.n_queries, centres, args.seed + 2),
        "generated",
    )


def exact_top10(data: np.ndarray, queries: np.ndarray, chunk: int = 200_000) -> list[set[int]]:
    """Ground truth by blocked matrix products (all cores: not part of any timed number)."""
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(0, len(data), chunk):
        s = queries @ data[start : start + chunk].T
        top = np.argpartition(-s, 9, axis=1)[:, :10]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-cand_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
    return [set(row.tolist()) for row in best_i]


def rss_gib(field: str = "VmRSS", pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def pct(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


def timed_searches(store: EmbeddedStore, queries: np.ndarray, **kwargs: object) -> tuple[list, list, list]:
    """Top-10 row ids, wall ms and CPU ms per query, on one thread (one request of a serving
    worker); on a shared machine the wall-clock tail also holds time given to other processes."""
    tops, wall, cpu = [], [], []
    with threadpool_limits(1):
        for q in queries:
            t, c = time.perf_counter(), time.thread_time()
            hits = store.search(q, k=10, **kwargs)  # type: ignore[arg-type]
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
            tops.append({int(h.uid) for h in hits})
    return tops, wall, cpu


def worker(args: argparse.Namespace) -> dict[str, object]:
    """One library (or `exact`) at one size, in this process."""
    data, queries, source = dataset(args)
    truth = exact_top10(data, queries)
    nn_cos = [float(np.max(data @ q)) for q in queries[:50]]
    store = EmbeddedStore(DIM)
    store.uids = [str(i) for i in range(len(data))]  # uids are row numbers: results compare directly
    store.titles = store.contents = [""] * len(data)
    store._vectors = data
    base_rss = rss_gib()
    result: dict[str, object] = {
        "library": args.worker,
        "vectors": len(data),
        "source": source,
        "queries": len(queries),
        "nearest_neighbour_cosine_p50": round(float(np.median(nn_cos)), 3),
        "vectors_gib": round(data.nbytes / 2**30, 3),
    }
    if args.worker == "exact":
        tops, ms, cpu = timed_searches(store, queries, exact=True)
        recall = np.mean([len(t & g) / 10 for t, g in zip(tops, truth, strict=True)])
        return {**result, **_lat(ms, cpu), "recall_at_10": round(float(recall), 4)}
    import importlib.metadata as md

    result["version"] = md.version(DISTRIBUTIONS[args.worker])
    params = HNSWParams(
        m=args.m, ef_construction=args.ef_construction, build_threads=args.build_threads, dtype=args.dtype
    )
    result["params"] = params.as_dict()
    t = time.perf_counter()
    store.build_index(args.worker, params)
    result["build_seconds"] = round(time.perf_counter() - t, 1)
    assert store.index is not None
    result["index_rss_gib"] = round(rss_gib() - base_rss, 3)
    result["index_reported_gib"] = round(store.index.nbytes() / 2**30, 3)
    sweep = []
    for ef in args.ef:
        store.index.set_ef(ef)
        tops, ms, cpu = timed_searches(store, queries)
        recall = np.mean([len(t & g) / 10 for t, g in zip(tops, truth, strict=True)])
        sweep.append({"ef_search": ef, **_lat(ms, cpu), "recall_at_10": round(float(recall), 4)})
        print(f"  {args.worker} n={len(data)} ef={ef}: {sweep[-1]}", file=sys.stderr, flush=True)
    result["sweep"] = sweep
    result["peak_rss_gib"] = round(rss_gib("VmHWM"), 3)
    return result


def _lat(ms: list[float], cpu: list[float]) -> dict[str, float]:
    return {**{f"ms_{k}": v for k, v in pct(ms).items()}, **{f"cpu_ms_{k}": v for k, v in pct(cpu).items()}}


def run_child(argv: list[str], max_rss_gib: float, max_seconds: float) -> dict[str, object]:
    """Run one worker under nice, watching its memory and time; its JSON result, or why it stopped."""
    cmd = ["nice", "-n", "10", sys.executable, __file__, *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    started, peak = time.monotonic(), 0.0
    while proc.poll() is None:
        peak = max(peak, rss_gib(pid=proc.pid))
        why = None
        if peak > max_rss_gib:
            why = f"stopped: RSS {peak:.1f} GiB over the {max_rss_gib} GiB bound"
        elif time.monotonic() - started > max_seconds:
            why = f"stopped: over the {max_seconds:.0f} s bound"
        if why:
            proc.kill()
            proc.wait()
            return {"error": why}
        time.sleep(0.5)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_200_000])
    ap.add_argument("--libraries", nargs="*", default=list(LIBRARIES), choices=LIBRARIES)
    ap.add_argument("--queries", dest="n_queries", type=int, default=200)
    ap.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "i8"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vectors", type=Path, help="real embeddings (n, 384) .npy instead of generated")
    ap.add_argument(
        "--queries-file", dest="queries", type=Path, help="query embeddings .npy (with --vectors)"
    )
    ap.add_argument("--skip-exact", action="store_true", help="keep the exact row of an earlier run")
    ap.add_argument("--max-rss-gib", type=float, default=6.0)
    ap.add_argument("--max-seconds", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    results = [r for r in results if "library" in r]  # rows of the earlier IVF-only layout go
    sizes = [0] if args.vectors else args.sizes
    for size in sizes:
        for library in [*([] if args.skip_exact else ["exact"]), *args.libraries]:
            if library != "exact" and not available(library):
                print(f"skip {library}: not installed", file=sys.stderr)
                continue
            argv = [a for a in sys.argv[1:]] + ["--worker", library, "--size", str(size)]
            print(f"{library} at {size or 'file'} ...", file=sys.stderr, flush=True)
            res = run_child(argv, args.max_rss_gib, args.max_seconds)
            res.setdefault("library", library)
            res.setdefault("vectors", size)
            res["machine"] = {"cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1)}
            print(json.dumps(res), flush=True)
            # replace an earlier result of the same case (reruns refresh rows, not duplicate them)
            key = (res["library"], res["vectors"], res.get("source"), json.dumps(res.get("params")))
            results = [
                r for r in results
                if (r.get("library"), r.get("vectors"), r.get("source"), json.dumps(r.get("params"))) != key
                # a run that stopped at its bound is replaced by a later run on the same vectors
                and not (r.get("error") and (r["library"], r["vectors"], r.get("source"))
                         == (res["library"], res["vectors"], res.get("source")))
            ]  # fmt: skip
            results.append(res)
            args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
