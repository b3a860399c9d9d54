"""Synthesis throughput at concurrency 1 vs 16 against the fault server with injected latency.

    python -m benchmarks.synthesis.bench [--products 128] [--latency 0.2] [--repeats 1]

Both settings run in the same process against the same fault server, after one untimed warm-up
run (imports, first client), so the ratio is a fair comparison on this machine. The server runs in
its own process, as a real API would: in-process, its threads would share the client's GIL.
Each timed run is the whole step: read input, call the teacher through a cold cache, filter,
write all outputs.
Goal: concurrency 16 at least 8x the throughput of concurrency 1. The load average is recorded:
on a shared 2-core machine, CPU contention from other jobs slows the c=16 run most.
Results go to benchmarks/synthesis/results.json (and stdout as a Markdown table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from components.synthesis.core import SynthesisConfig, run_synthesis
from tests.fakes import FaultServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KEY = "sk-bench"
GOAL = 8.0


def write_products(path: Path, n: int) -> Path:
    rows = [
        [f"b{i:04d}", f"Travel mug model {i}",
         f"Stainless steel travel mug that holds {300 + i} ml. Keeps drinks hot for {4 + i % 5} hours. "
         "Fits standard car cup holders and has a leak-proof lid.", "train"]
        for i in range(n)
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["uid", "title", "content", "split"]).to_csv(path, index=False)
    return path


@contextlib.contextmanager
def fault_server(latency: float, in_process: bool) -> Iterator[str]:
    """The fault server's base URL; in a child process unless `in_process`."""
    if in_process:
        with FaultServer(latency_s=latency) as srv:
            yield srv.url
        return
    code = "from tests.fakes.openai_fault_server import main; main()"
    cmd = [sys.executable, "-c", code, "--latency", str(latency)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait()


def one_run(url: str, inp: Path, work: Path, concurrency: int) -> float:
    cfg = SynthesisConfig(
        base_url=url,
        model="fault-model",
        cache_dir=work / f"cache-c{concurrency}-{time.monotonic_ns()}",  # cold cache: every product is a call
        concurrency=concurrency,
        requests_per_min=None,
        tokens_per_min=None,
    )
    start = time.perf_counter()
    summary = run_synthesis(cfg, inp, work / "out", environ={"OPENAI_API_KEY": KEY}, progress=False)
    elapsed = time.perf_counter() - start
    assert summary["with_pairs"] == summary["products"], summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--in-process-server", action="store_true", help="share the client's process")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, fault_server(args.latency, args.in_process_server) as url:
        work = Path(tmp)
        inp = write_products(work / f"data-{args.products}.csv", args.products)
        times: dict[int, list[float]] = {1: [], 16: []}
        one_run(url, write_products(work / "data-16.csv", 16), work, 16)  # warm-up, untimed
        load_before = os.getloadavg()[0]
        for _ in range(args.repeats):
            for c in (1, 16):
                times[c].append(one_run(url, inp, work, c))
        load_after = os.getloadavg()[0]

    results = {
        "products": args.products,
        "latency_s": args.latency,
        "repeats": args.repeats,
        "server": "in-process thread" if args.in_process_server else "child process",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "goal_ratio": GOAL,
    }
    for c, ts in times.items():
        t = statistics.median(ts)
        results[f"c{c}"] = {"seconds": round(t, 3), "products_per_s": round(args.products / t, 2)}
    results["ratio"] = round(results["c16"]["products_per_s"] / results["c1"]["products_per_s"], 2)
    results["goal_met"] = results["ratio"] >= GOAL
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print("| concurrency | seconds | products/s |\n|---|---|---|")
    for c in (1, 16):
        print(f"| {c} | {results[f'c{c}']['seconds']} | {results[f'c{c}']['products_per_s']} |")
    verdict = "met" if results["goal_met"] else "NOT met"
    print(f"\nratio c16/c1 = {results['ratio']}x (goal >= {GOAL}x): {verdict}")


if __name__ == "__main__":
    main()
