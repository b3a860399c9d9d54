"""Training rows with the real length distribution, made by the project's own steps (CPU, here).

    python -m benchmarks.finetune_gpu.make_data --out .carry/bench-data [--tokenizer qwen2.5=DIR ...]

generated catalogue (`components.prep.sample_data.generate_trn`, the real file's shapes) -> `run_prep`
(cleaning, 100-character rule, dedup) -> `sample_catalogue` (1,000 products, the production sample size)
-> `run_synthesis` against the protocol-faithful local teacher (`tests/fakes/openai_fault_server.py`,
whose answers are sentences of the product's own description, so they pass the grounding filter) ->
the synthesis step's own `describer-*.jsonl` / `qa-*.jsonl`. Train and eval splits are concatenated:
`describer.jsonl` holds one row per sampled product (1,000), `qa.jsonl` the QA rows of the same sample.

What is not real: QA answers are extractive (a real teacher paraphrases; its answers would be of a
similar length, bounded by `max_tokens: 512` and the grounding filter). Descriptions and titles are the
generated catalogue's, whose length mix follows the real file (docs/benchmarks.md, prep).
With `--tokenizer FAMILY=DIR`, prints the token-length histogram per task as training sees it
(rendered with the tokenizer's chat template, the same `core.tokenize_example` the fine-tune uses).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TASKS = ("describer", "qa")
# Histogram bins (tokens per row): the recipes' max_seq_length is 1024 (describer) and 1536 (QA).
BINS = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


def make(out: Path, products: int = 1000, seed: int = 0, lines: int = 4000) -> dict[str, Any]:
    from components.prep.core import PrepConfig, run_prep
    from components.prep.sample_data import generate_trn
    from components.sampling.core import SamplingConfig, sample_catalogue
    from components.synthesis.core import SynthesisConfig, run_synthesis
    from tests.fakes.openai_fault_server import FaultServer

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        generate_trn(t / "trn.json", lines, seed)
        run_prep(t / "trn.json", t / "prep", PrepConfig(), progress=False)
        sample_catalogue(t / "prep", t / "sample", SamplingConfig(n=products, seed=seed))
        config = SynthesisConfig(
            model="local-teacher",
            cache_dir=t / "cache",
            requests_per_min=None,
            tokens_per_min=None,
            concurrency=16,
        )
        with FaultServer() as teacher:
            config = config.model_copy(update={"base_url": teacher.url})
            summary = run_synthesis(
                config, t / "sample", t / "syn", environ={"OPENAI_API_KEY": "local"}, progress=False
            )
        counts = {}
        for task in TASKS:
            rows = [
                line
                for split in ("train", "eval")
                for line in (t / "syn" / f"{task}-{split}.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            (out / f"{task}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
            counts[task] = len(rows)
        shutil.copy2(t / "syn" / "synthesis-summary.json", out / "synthesis-summary.json")
    return {"rows": counts, "synthesis": {k: summary[k] for k in ("products", "with_pairs", "quarantined")}}


def token_lengths(rows_path: Path, tokenizer_dir: str | Path, max_len: int) -> list[int]:
    """Tokens per row exactly as the fine-tune tokenizes them (prompt + completion, truncated at max_len)."""
    from transformers import AutoTokenizer

    from components.finetune.core import end_tokens, read_examples, tokenize_example

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    eos = end_tokens(tok)
    turn_end = tok.eos_token if tok.eos_token in eos else eos[0]
    lengths = []
    for ex in read_examples(rows_path, []):
        r = tokenize_example(tok, ex.messages, tok.chat_template, max_len, turn_end)
        if not isinstance(r, str):
            lengths.append(len(r.input_ids))
    return lengths


def histogram(lengths: list[int]) -> str:
    """One line per bin: `<= 256: 412 ###########`, plus n / mean / p50 / p90 / max."""
    import statistics

    if not lengths:
        return "(no rows)"
    lines, lo = [], 0
    for hi in (*BINS, max(max(lengths), BINS[-1] + 1)):
        n = sum(lo < x <= hi for x in lengths)
        if n:
            lines.append(f"  {lo + 1:>5}-{hi:<5} {n:>5} {'#' * max(1, round(60 * n / len(lengths)))}")
        lo = hi
    s = sorted(lengths)
    lines.append(
        f"  n={len(s)} mean={statistics.mean(s):.0f} p50={s[len(s) // 2]} p90={s[int(len(s) * 0.9)]} "
        f"max={s[-1]} total={sum(s)}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--products", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", action="append", default=[], help="FAMILY=DIR, for the histograms")
    args = p.parse_args(argv)
    info = make(args.out, args.products, args.seed)
    print(json.dumps(info))
    hist: dict[str, Any] = {}
    for spec in args.tokenizer:
        family, _, d = spec.partition("=")
        for task, max_len in (("describer", 1024), ("qa", 1536)):
            lengths = token_lengths(args.out / f"{task}.jsonl", d, max_len)
            print(f"{task} rows, {family} tokenizer (max_seq_length {max_len}):\n{histogram(lengths)}")
            hist[f"{task}/{family}"] = lengths
    (args.out / "lengths.json").write_text(json.dumps(hist), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
