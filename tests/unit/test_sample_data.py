"""generate_trn: deterministic, trn.json-shaped, and every edge case present; prep reads it."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from pathlib import Path

from components.prep.core import QUARANTINE_NAME, PrepConfig, run_prep
from components.prep.sample_data import EDGE_KINDS, MIN_LINES_ALL_KINDS, generate_trn


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    generate_trn(tmp_path / "a.json", 500, seed=7)
    generate_trn(tmp_path / "b.json", 500, seed=7)
    generate_trn(tmp_path / "c.json", 500, seed=8)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()


def test_gzip_by_suffix_and_deterministic(tmp_path: Path) -> None:
    generate_trn(tmp_path / "a.json.gz", 300, seed=1)
    generate_trn(tmp_path / "b.json.gz", 300, seed=1)
    generate_trn(tmp_path / "plain.json", 300, seed=1)
    raw = (tmp_path / "a.json.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw == (tmp_path / "b.json.gz").read_bytes()
    assert gzip.decompress(raw) == (tmp_path / "plain.json").read_bytes()


def test_every_edge_kind_is_present(tmp_path: Path) -> None:
    path = tmp_path / "trn.json"
    counts = generate_trn(path, MIN_LINES_ALL_KINDS, seed=3)
    assert {k for k in EDGE_KINDS if counts[k] == 0} == set()

    data = path.read_bytes()
    lines = data.split(b"\n")
    assert len(lines) == MIN_LINES_ALL_KINDS and not data.endswith(b"\n")  # truncated last line
    texts = [ln.decode("utf-8", "replace") for ln in lines]
    objs = []
    for t in texts[:-1]:
        with contextlib.suppress(json.JSONDecodeError):
            objs.append(json.loads(t))
    records = [o for o in objs if isinstance(o, dict)]
    joined = "\n".join(texts)
    for needle in ("&#8217;", "&amp;quot;", "&lt;", '"content": ""', '"title": null', '"content": null'):
        assert needle in joined, needle
    assert re.search(r"<(br|p|li)>", joined)
    assert any(isinstance(o, dict) and str(o.get("uid", "")).startswith("000") for o in objs)
    assert any(not isinstance(o, dict) for o in objs)  # a JSON line that is not an object
    assert any("uid" not in r for r in records) and any("content" not in r for r in records)
    assert all(isinstance(r.get("target_ind"), list) for r in records)
    pairs = [(r.get("title"), r.get("content")) for r in records if r.get("content")]
    assert len(pairs) > len(set(pairs))  # duplicate products
    assert any(any(ord(ch) > 0x3000 for ch in str(r.get("title"))) for r in records)  # CJK / emoji


def test_prep_on_generated_file_finds_the_planted_damage(tmp_path: Path) -> None:
    path = tmp_path / "trn.json"
    counts = generate_trn(path, 2000, seed=5)
    s = run_prep(path, tmp_path / "out", PrepConfig(), progress=False)
    for kind in ("invalid_utf8", "not_an_object", "blank_line", "invalid_json"):
        assert s.dropped.get(kind, 0) == counts[kind], kind
    assert s.dropped["truncated_line"] == 1
    assert s.dropped["empty_content"] >= counts["empty_content"]
    assert s.lines_read == 2000 == s.kept + sum(s.dropped.values())
    assert 0.3 < s.kept / s.lines_read < 0.7  # the real file keeps ~53%
    last = (tmp_path / "out" / QUARANTINE_NAME).read_text(encoding="utf-8").splitlines()[-1]
    assert json.loads(last)["line"] == 2000


def test_size_per_line_is_realistic(tmp_path: Path) -> None:
    path = tmp_path / "trn.json"
    generate_trn(path, 5000, seed=0)
    per_line = path.stat().st_size / 5000
    assert 300 < per_line < 900  # the real file: ~1.1 GB / 2.25M lines ~ 480 bytes
