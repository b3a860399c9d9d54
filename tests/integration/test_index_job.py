"""The chart's catalogue-indexing Job, its two commands run as the pod runs them, against real S3.

`fetch-catalogue` (`python -m components.common.storage fetch URI /work`) downloads prep's parquet
from the embedded SeaweedFS; `index` (`prodtune index /work/<file> ...`) embeds it. The pod uses
`--backend weaviate`, which needs a Weaviate server that cannot be had here, so this runs the same
CLI with the embedded store; tests/unit/test_chart.py pins the Job's exact commands and parses its
arguments with the real `prodtune index` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.storage import S3Store

pytestmark = pytest.mark.integration

ROWS = [
    {
        "uid": "0000031909",
        "title": "Girls Ballet Tutu Neon Pink",
        "content": "A three layer ballet tutu, 12 inches long.",
    },
    {
        "uid": "B00002SWLN",
        "title": "Stainless Steel Water Bottle",
        "content": "Keeps drinks cold for 24 hours.",
    },
    {"uid": "B0000X", "title": "", "content": "no title: counted as skipped"},
]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def test_fetch_then_index_like_the_job(s3_store: S3Store, stack_env: dict[str, str], tmp_path: Path) -> None:
    s3_store.ensure_bucket()
    local = tmp_path / "trn-processed.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), local)
    uri = s3_store.upload_file(local, "kfp/run-1/prep/processed/trn-processed.parquet").uri
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    work = tmp_path / "work"

    fetched = run([sys.executable, "-m", "components.common.storage", "fetch", uri, str(work)], env)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(work / "trn-processed.parquet")
    assert (work / "trn-processed.parquet").read_bytes() == local.read_bytes()

    prodtune = Path(sys.executable).with_name("prodtune")
    indexed = run([str(prodtune), "index", str(work / "trn-processed.parquet"), "--backend", "embedded",
                   "--out", str(tmp_path / "store"), "--batch-size", "256"], env)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    summary = json.loads(indexed.stdout.strip().splitlines()[-1])
    assert summary["rows_read"] == 3 and summary["indexed"] == 2
    assert summary["skipped"] == {"empty_title_or_uid": 1}

    missing = run([sys.executable, "-m", "components.common.storage", "fetch", uri + ".gone", str(work)], env)
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing at s3://" in lines[0], missing.stderr
