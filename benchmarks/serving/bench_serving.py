"""Load benchmark of the serving API: c concurrent official `openai` clients against `prodtune`'s API
(real uvicorn on 127.0.0.1, the real router graph and store, the production Ollama backend) over a
protocol-faithful Ollama server that takes `--reply-s` per reply and generates `--parallel` replies at
once (OLLAMA_NUM_PARALLEL). The server side runs in its own process so the clients do not share its GIL.

Reports, per concurrency level: requests, errors, throughput (requests/s), latency p50/p95/p99, and
throughput relative to c=1 measured in the same run. Goal: c=8 >= 6x c=1 with no errors.

    .venv/bin/python -m benchmarks.serving.bench_serving [--levels 1,2,4,8,16] [--reply-s 1.0]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

KEY = "bench-key"
HERE = Path(__file__).resolve().parent


def _serve(port: int, reply_s: float, parallel: int, ready: Any) -> None:
    import uvicorn
    from pydantic import SecretStr

    from serving import graph
    from serving.api.app import create_app
    from serving.api.responder import GraphResponder
    from serving.api.settings import ApiSettings
    from serving.config import ServingSettings
    from serving.llm.ollama_backend import OllamaBackend
    from serving.router.classifier import RouterClassifier
    from tests.fakes.ollama_server import FakeOllama
    from tests.fakes.retrieval import HashingEmbedder, build_store

    with FakeOllama(latency_s=reply_s, parallel=parallel).running() as fake:
        embedder = HashingEmbedder()

        def backend(name: str) -> OllamaBackend:
            return OllamaBackend(name, host=fake.url, concurrency=parallel, max_waiting=64)

        responder = GraphResponder(
            graph.build_graph,
            classifier=RouterClassifier.from_path(),
            store=build_store(embedder),
            embedder=embedder,
            describer=backend("prodtune-describer:champion"),
            qa=backend("prodtune-qa:champion"),
            settings=ServingSettings(),
        )
        settings = ApiSettings(key=SecretStr(KEY), rate_burst=10_000, rate_per_minute=1e6)
        config = uvicorn.Config(
            create_app(responder, settings=settings), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        threading.Thread(target=lambda: (time.sleep(0.5), ready.set()), daemon=True).start()
        server.run()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_level(base_url: str, concurrency: int, requests: int) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120)
    latencies: list[float] = []
    errors: list[str] = []
    todo = list(range(requests))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            t0 = time.monotonic()
            try:
                r = client.chat.completions.create(
                    model="prodtune-describer", messages=[{"role": "user", "content": f"Ballet Tutu {i}"}]
                )
                assert r.choices[0].message.content
                with lock:
                    latencies.append(time.monotonic() - t0)
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 3),
        "p50_s": round(q[49], 3),
        "p95_s": round(q[94], 3),
        "p99_s": round(q[98], 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,2,4,8,16")
    ap.add_argument("--reply-s", type=float, default=1.0, help="seconds the Ollama server takes per reply")
    ap.add_argument("--parallel", type=int, default=8, help="OLLAMA_NUM_PARALLEL of the fake server")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    port = _free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_serve, args=(port, args.reply_s, args.parallel, ready))
    proc.start()
    try:
        if not ready.wait(60):
            raise SystemExit("the API did not start")
        base = f"http://127.0.0.1:{port}/v1"
        run_level(base, 2, 4)  # warm-up: imports, first connections, the router's first decisions
        rows = [run_level(base, c, max(8, 4 * c)) for c in levels]
    finally:
        proc.terminate()
        proc.join(10)
    base_rps = rows[0]["throughput_rps"]
    for row in rows:
        row["speedup_vs_c1"] = round(row["throughput_rps"] / base_rps, 2) if base_rps else None
        print(
            f"c={row['concurrency']:>2}  {row['throughput_rps']:6.2f} req/s  x{row['speedup_vs_c1']:<5}  "
            f"p50 {row['p50_s']:.2f}s  p95 {row['p95_s']:.2f}s  p99 {row['p99_s']:.2f}s  errors {row['errors']}"
        )
    result = {
        "reply_s": args.reply_s,
        "ollama_num_parallel": args.parallel,
        "levels": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
