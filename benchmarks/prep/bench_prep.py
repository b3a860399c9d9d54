"""prep benchmark: our streaming `run_prep` vs. the naive pandas + BeautifulSoup way, same input, same run.

    nice -n 10 python benchmarks/prep/bench_prep.py                 # full size: 2,248,619 lines
    python benchmarks/prep/bench_prep.py --lines 20000 --no-docs    # smoke run

The input is generated once by `generate_trn(..., damage=False)` and cached under --data-dir (outside
git). It keeps every content edge case but no damaged lines: `pandas.read_json(lines=True)` cannot read
damaged lines at all (shown separately on a small damaged file). Each contender runs in its own
subprocess; the parent measures wall time (interpreter start and imports included) and peak RSS of
that child (`os.wait4`). The naive way runs under an address-space limit and a timeout so it cannot
take the shared machine down; if it cannot do --naive-lines, that is reported. Rows/s = input lines / s.

Writes benchmarks/prep/results.json and the `## prep` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FULL_LINES = 2_248_619
HERE = Path(__file__).resolve().parent
DOCS = ROOT / "docs" / "benchmarks.md"


# ----------------------------------------------------------------------------------------- workers


def worker_ours(input_path: str, out_dir: str) -> dict[str, Any]:
    from components.prep.core import PrepConfig, run_prep

    summary = run_prep(input_path, out_dir, PrepConfig(), progress=False)
    return {"lines_read": summary.lines_read, "kept": summary.kept, "dropped": summary.dropped}


def worker_naive(input_path: str, out_dir: str) -> dict[str, Any]:
    """What a notebook would do: load everything, BeautifulSoup every cell, filter, write."""
    import warnings

    import pandas as pd
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

    warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
    df = pd.read_json(input_path, lines=True, dtype={"uid": str})
    lines_read = len(df)

    def text(x: Any) -> Any:
        return " ".join(BeautifulSoup(x, "html.parser").get_text().split()) if isinstance(x, str) else None

    df["title"] = df["title"].map(text)
    df["content"] = df["content"].map(text)
    df = df[df["uid"].notna() & df["title"].notna() & df["content"].notna()]
    df = df[(df["title"] != "") & (df["content"].str.len() >= 100)]
    df = df.drop_duplicates(subset=["title", "content"])
    df = df[["uid", "title", "content"]]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "trn-processed.csv", index=False)
    df.astype({"uid": str}).to_parquet(out / "trn-processed.parquet", index=False)
    zeros = bool(df["uid"].astype(str).str.match(r"^0\d").any())
    return {"lines_read": lines_read, "kept": len(df), "uid_leading_zeros_kept": zeros}


WORKERS = {"ours": worker_ours, "naive": worker_naive}


def run_worker(argv: list[str]) -> None:
    name, input_path, out_dir, result_path = argv
    started = time.perf_counter()
    result = WORKERS[name](input_path, out_dir)
    result["inner_s"] = time.perf_counter() - started
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


# ------------------------------------------------------------------------------------------ parent


def measure(name: str, input_path: Path, lines: int, timeout_s: float, mem_limit_gb: float | None) -> dict:
    """Run one worker in a subprocess: wall time, peak RSS, its result (or why it has none)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-prep-{name}-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            str(input_path),
            str(Path(tmp) / "out"),
            str(result_path),
        ]

        def limit() -> None:
            if mem_limit_gb:
                cap = int(mem_limit_gb * 1024**3)
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        print(f"[bench] {name}: {lines:,} lines ...", flush=True)
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, preexec_fn=limit, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        stderr = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        row: dict[str, Any] = {
            "lines": lines,
            "wall_s": round(wall, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        }
        if proc.returncode == 0 and result_path.exists():
            row.update(json.loads(result_path.read_text(encoding="utf-8")))
            row["rows_per_s"] = round(lines / wall)
            row["ok"] = True
        else:
            timed_out = wall >= timeout_s
            tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            row.update(
                {"ok": False, "error": f"timeout after {timeout_s:.0f} s" if timed_out else tail[0][:300]}
            )
        print(f"[bench] {name}: {row}", flush=True)
        return row


def naive_on_damaged_file(data_dir: Path) -> str:
    """What pandas.read_json does with a real-world (damaged) file."""
    from components.prep.sample_data import generate_trn

    path = data_dir / "damaged-2000.json"
    if not path.exists():
        generate_trn(path, 2000, seed=0)
    code = "import pandas as pd, sys; pd.read_json(sys.argv[1], lines=True)"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 0:
        return "read without error"
    return proc.stderr.strip().splitlines()[-1][:200]


def dataset(data_dir: Path, lines: int, seed: int) -> tuple[Path, float | None]:
    from components.prep.sample_data import GENERATOR_VERSION, generate_trn

    path = data_dir / f"trn-{lines}-seed{seed}-v{GENERATOR_VERSION}-nodamage.json"
    if path.exists():
        return path, None
    print(f"[bench] generating {lines:,} lines -> {path}", flush=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    generate_trn(tmp, lines, seed=seed, damage=False)
    tmp.rename(path)
    return path, round(time.perf_counter() - started, 1)


def versions() -> dict[str, str]:
    import bs4
    import orjson
    import pandas
    import pyarrow

    return {
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "orjson": orjson.__version__,
        "beautifulsoup4": bs4.__version__,
    }


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8").splitlines()
    mem_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024**2, 1),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
    }


def write_docs(results: dict[str, Any]) -> None:
    ours, naive, same = results["ours"], results["naive"], results.get("ours_at_naive_size")
    m, v = results["machine"], results["versions"]
    lines = [
        "## prep",
        "",
        f"`python benchmarks/prep/bench_prep.py` ({results['date']}; {m['cpus']} cores, {m['mem_gib']} GiB, "
        f"load average {m['load_avg_1m_at_start']} at start: the machine is shared, so absolute numbers are "
        "noisy; the ratio is measured in the same run). "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ".",
        "",
        f"Input: synthetic `trn.json` from `generate_trn` ({results['input']['lines']:,} lines, "
        f"{results['input']['bytes'] / 1e9:.2f} GB, every content edge case, no damaged lines because "
        "pandas cannot read them). Rows/s = input lines per second of wall time, interpreter start included; "
        "rows per CPU-s = input lines per second of the child's user+system CPU time, which other users' "
        "load on the shared cores disturbs much less than wall time.",
        "",
        "| contender | lines | wall s | CPU s | rows/s | rows per CPU-s | peak RSS MiB | kept |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, r: dict[str, Any]) -> str:
        head = f"| {label} | {r['lines']:,} | {r['wall_s']} | {r['cpu_s']} |"
        if not r.get("ok"):
            return f"{head} failed: {r.get('error')} | | {r['peak_rss_mib']} | |"
        per_cpu = round(r["lines"] / r["cpu_s"]) if r["cpu_s"] else 0
        return f"{head} {r['rows_per_s']:,} | {per_cpu:,} | {r['peak_rss_mib']} | {r['kept']:,} |"

    lines.append(row("ours (`run_prep`, streaming)", ours))
    if same:
        lines.append(row("ours, at the naive run's size", same))
    lines.append(row("naive (`pd.read_json` + BeautifulSoup per cell)", naive))
    if results.get("ours_after_naive"):
        lines.append(row("ours again, after the naive run", results["ours_after_naive"]))
    lines += [
        "",
        f"**Speed-up at the same size (ours: mean of its runs around the naive one): "
        f"{results['speedup']}x rows/s (wall), {results['speedup_cpu']}x "
        f"rows per CPU-s** (goal >= 5x); ours peak RSS {ours['peak_rss_mib']} MiB (goal < 1024 MiB).",
    ]
    if results.get("notes"):
        lines += [""] + [f"- {n}" for n in results["notes"]]
    section = "\n".join(lines) + "\n"

    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## prep\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text, encoding="utf-8")


def summarise(results: dict[str, Any]) -> None:
    """Speed-ups at the same input size (wall rows/s and rows per CPU-s) and the goals.

    Ours is the mean of its runs before and after the naive run (when there is an "after" run).
    """
    naive = results["naive"]
    runs = [results.get("ours_at_naive_size", results["ours"]), results.get("ours_after_naive")]
    runs = [r for r in runs if r and r.get("ok")]
    ok = naive.get("ok") and runs
    rows_per_s = sum(r["rows_per_s"] for r in runs) / len(runs) if runs else 0
    cpu_s = sum(r["cpu_s"] for r in runs) / len(runs) if runs else 0
    results["speedup"] = round(rows_per_s / naive["rows_per_s"], 1) if ok else None
    results["speedup_cpu"] = round(naive["cpu_s"] / cpu_s, 1) if ok else None
    results["goals"] = {
        "speedup_ge_5x": bool(results["speedup"] and results["speedup"] >= 5),
        "ours_peak_rss_lt_1gib": results["ours"]["peak_rss_mib"] < 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=FULL_LINES)
    ap.add_argument(
        "--naive-lines", type=int, default=None, help="input size for the naive way (default --lines)"
    )
    ap.add_argument(
        "--fallback-naive-lines",
        type=int,
        default=500_000,
        help="retry size if the naive way fails at full size",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "prodtune-bench-prep")
    ap.add_argument("--naive-timeout", type=float, default=25 * 60, help="seconds")
    ap.add_argument(
        "--naive-mem-limit-gb", type=float, default=16.0, help="address-space cap (shared machine)"
    )
    ap.add_argument("--results", type=Path, default=HERE / "results.json")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument("--note", action="append", default=[], help="extra note for the docs (repeatable)")
    ap.add_argument("--docs-from", type=Path, help="only re-render docs from an existing results.json")
    args = ap.parse_args()
    if args.docs_from:
        results = json.loads(args.docs_from.read_text(encoding="utf-8"))
        summarise(results)
        args.docs_from.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        write_docs(results)
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    naive_lines = args.naive_lines or args.lines

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
    }
    path, gen_s = dataset(args.data_dir, args.lines, args.seed)
    results["input"] = {"lines": args.lines, "bytes": path.stat().st_size, "generate_s": gen_s}
    results["ours"] = measure("ours", path, args.lines, timeout_s=3600, mem_limit_gb=None)

    def naive_at(lines: int) -> None:
        naive_path = path
        if lines != args.lines:
            naive_path, _ = dataset(args.data_dir, lines, args.seed)
            results["ours_at_naive_size"] = measure("ours", naive_path, lines, 3600, None)
        results["naive"] = measure("naive", naive_path, lines, args.naive_timeout, args.naive_mem_limit_gb)
        if results["naive"].get("ok"):
            # Ours again after the naive run: the shared machine's load drifts, so the comparison
            # uses the mean of the runs before and after it.
            results["ours_after_naive"] = measure("ours", naive_path, lines, 3600, None)

    naive_at(naive_lines)
    failed_full = None
    if not results["naive"].get("ok") and args.fallback_naive_lines < naive_lines:
        failed_full = results["naive_failed_attempt"] = results["naive"]
        naive_lines = args.fallback_naive_lines
        naive_at(naive_lines)
    summarise(results)
    naive = results["naive"]
    damaged = naive_on_damaged_file(args.data_dir)
    notes = [f"pandas.read_json on a damaged file (2,000 lines from generate_trn): `{damaged}`"]
    if failed_full:
        notes.append(
            f"The naive way failed on {failed_full['lines']:,} lines ({failed_full['error']}, peak RSS "
            f"{failed_full['peak_rss_mib']} MiB); the speed-up compares both at {naive_lines:,} lines."
        )
    elif naive_lines != args.lines:
        notes.append(f"The naive way ran on {naive_lines:,} lines; the speed-up compares both at that size.")
    notes += args.note
    if naive.get("ok") and not naive.get("uid_leading_zeros_kept", True):
        notes.append("The naive way lost the uids' leading zeros (read_json turned them into numbers).")
    results["notes"] = notes
    args.results.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    if not args.no_docs:
        write_docs(results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        run_worker(sys.argv[2:])
    else:
        main()
