"""What one step's process pays to import its stack, with the venv byte-compiled and without, same run.

    python benchmarks/setup/bench_bytecode.py [--rounds 3]

Every pipeline step runs in its own process (kfp.local's SubprocessRunner, a pod on a cluster), and
so do the CLI, the teacher server and the GGUF converter. `scripts/setup.sh` used to install the locks
with `--no-compile`, expecting modules to be compiled when first imported; where PYTHONDONTWRITEBYTECODE
is set (this kind of machine, and our images at run time) nothing is ever written, and every process
compiled torch, transformers and the rest from source again. Setup now byte-compiles the venv.

"without": the same venv, with Python pointed at an empty PYTHONPYCACHEPREFIX (and told not to write
there), so it finds no bytecode, exactly as before. The two are interleaved, `--rounds` times, in
fresh processes. Writes benchmarks/setup/results-bytecode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).with_name("results-bytecode.json")
# What the fine-tune step imports (the heaviest step), and the other steps' modules.
STACKS = {
    "finetune": "import components.finetune.core, components.finetune.backend_hf, components.finetune.training, "
    "trl, peft; from transformers import LlamaForCausalLM, AutoTokenizer",
    "prep + sampling + export": "import components.prep.core, components.sampling.core, "
    "components.export.core, kfp.dsl.executor_main",
}


def _import_s(code: str, no_bytecode: str | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if no_bytecode:
        env.update(PYTHONPYCACHEPREFIX=no_bytecode, PYTHONDONTWRITEBYTECODE="1")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    from components.common.cache import cpu_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as empty:
        for name, code in STACKS.items():
            _import_s(code, None)  # warm the page cache for both
            times: dict[str, list[float]] = {"compiled": [], "without": []}
            for _ in range(args.rounds):
                times["compiled"].append(_import_s(code, None))
                times["without"].append(_import_s(code, empty))
            on, off = statistics.median(times["compiled"]), statistics.median(times["without"])
            rows.append({"stack": name, "compiled_s": round(on, 2), "without_bytecode_s": round(off, 2),
                         "speedup": round(off / on, 2), "runs": times})  # fmt: skip
            print(f"{name:26s} byte-compiled {on:5.1f} s, without bytecode {off:5.1f} s -> {off / on:.2f}x")
    OUT.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "python": sys.version.split()[0],
                               "rounds": args.rounds, "rows": rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
