"""run_prep: filters, reconciliation, uids, gzip, damaged lines, bad input, atomic outputs, tracking."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.errors import InputError
from components.prep import core
from components.prep.core import (
    CSV_NAME,
    OUTPUT_NAMES,
    PARQUET_NAME,
    QUARANTINE_NAME,
    SUMMARY_NAME,
    PrepConfig,
    run_prep,
    run_prep_tracked,
)

LONG = "High quality 3 layer ballet tutu, 12 inches in length, soft and comfortable for every little dancer."
assert len(LONG) >= 100


def rec(
    uid: Any = "0000031909", title: Any = "Girls Ballet Tutu", content: Any = LONG, **extra: Any
) -> bytes:
    obj = {"uid": uid, "title": title, "content": content, "target_ind": [1, 2], "target_rel": [1.0, 1.0]}
    obj = {k: v for k, v in obj.items() if v is not MISSING}
    obj.update(extra)
    return orjson.dumps(obj)


MISSING = object()


def write_lines(path: Path, lines: list[bytes], *, final_newline: bool = True, gz: bool = False) -> Path:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def quarantine(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / QUARANTINE_NAME).read_text(encoding="utf-8").splitlines()]


def summary_json(out: Path) -> dict[str, Any]:
    return json.loads((out / SUMMARY_NAME).read_text(encoding="utf-8"))


CFG = PrepConfig()


def run(path: Path, out: Path, config: PrepConfig = CFG) -> core.PrepSummary:
    return run_prep(path, out, config, progress=False)


# --------------------------------------------------------------------------------------- filters


def test_each_filter_reason(tmp_path: Path) -> None:
    lines = [
        rec(uid="0001"),  # 1 kept
        rec(uid="0002", content=""),  # 2 empty_content
        rec(uid="0003", content="Too short."),  # 3 short_content
        rec(uid="0004", content="<p>" + "<br>" * 60 + "&nbsp;" * 10 + "</p>"),  # 4 empty after cleaning
        rec(uid="0005", content="<b>" * 30 + "tiny" + "</b>" * 30),  # 5 short after cleaning (raw 244)
        rec(uid="0006", content=None),  # 6 missing_content (null)
        rec(uid="0007", content=MISSING),  # 7 missing_content (absent)
        rec(uid="0008", title=None),  # 8 missing_title
        rec(uid="0009", title=MISSING),  # 9 missing_title
        rec(uid="0010", title="<b> </b>&nbsp;"),  # 10 empty_title
        rec(uid="0011", title=123),  # 11 invalid_title
        rec(uid="0012", content=["list"]),  # 12 invalid_content
        rec(uid=None),  # 13 missing_uid
        rec(uid=MISSING),  # 14 missing_uid
        rec(uid="   "),  # 15 missing_uid
        rec(uid=31909),  # 16 invalid_uid
        rec(uid="0017"),  # 17 duplicate of line 1 (same title + content, other uid)
        rec(uid="0018", title="Girls Ballet Tutu", content=LONG + " Also in blue."),  # 18 kept: same title
        rec(uid="0019", title="Girls&nbsp;Ballet  <b>Tutu</b>", content=LONG.replace(",", "&#44;")),  # 19 dup
    ]
    out = tmp_path / "out"
    s = run(write_lines(tmp_path / "trn.json", lines), out)
    reasons = {q["line"]: q["reason"] for q in quarantine(out)}
    assert reasons == {
        2: "empty_content",
        3: "short_content",
        4: "empty_content",
        5: "short_content",
        6: "missing_content",
        7: "missing_content",
        8: "missing_title",
        9: "missing_title",
        10: "empty_title",
        11: "invalid_title",
        12: "invalid_content",
        13: "missing_uid",
        14: "missing_uid",
        15: "missing_uid",
        16: "invalid_uid",
        17: "duplicate",
        19: "duplicate",
    }
    assert s.kept == 2
    df = pd.read_parquet(out / PARQUET_NAME)
    assert df["uid"].tolist() == ["0001", "0018"]


def test_min_content_chars_counts_cleaned_text(tmp_path: Path) -> None:
    text = "x" * 60
    padded = f"<p><b>{text}</b></p>" + "&nbsp;" * 10  # raw 134 chars, 60 of text
    path = write_lines(tmp_path / "trn.json", [rec(uid="1", content=padded), rec(uid="2", content="y" * 100)])
    s = run(path, tmp_path / "a")
    assert (s.kept, s.dropped) == (1, {"short_content": 1})
    s = run(path, tmp_path / "b", PrepConfig(min_content_chars=60))
    assert s.kept == 2
    assert pd.read_parquet(tmp_path / "b" / PARQUET_NAME)["content"].tolist() == [text, "y" * 100]


def test_dedupe_off_keeps_duplicates(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "trn.json", [rec(uid="1"), rec(uid="2")])
    assert run(path, tmp_path / "a").dropped == {"duplicate": 1}
    assert run(path, tmp_path / "b", PrepConfig(dedupe=False)).kept == 2


def test_cleaned_text_is_written(tmp_path: Path) -> None:
    content = "<p>Soft &amp; &quot;comfy&quot; tutu&#8217;s layers.</p><ul><li>" + LONG + "</li></ul>"
    path = write_lines(
        tmp_path / "trn.json", [rec(title="Kid&#8217;s  <b>Tutu</b> &amp;amp; Bow", content=content)]
    )
    out = tmp_path / "out"
    run(path, out)
    row = pd.read_parquet(out / PARQUET_NAME).iloc[0]
    assert row["title"] == "Kid’s Tutu & Bow"
    assert row["content"] == 'Soft & "comfy" tutu’s layers.\n' + LONG


# --------------------------------------------------------------------------- outputs and reconciliation


def test_summary_reconciles_and_matches_outputs(tmp_path: Path) -> None:
    lines = [rec(uid=f"{i:010d}", content=LONG + f" Variant {i}." if i % 3 else "") for i in range(30)]
    lines.insert(5, b"{not json")
    out = tmp_path / "out"
    s = run(write_lines(tmp_path / "trn.json", lines), out)
    data = summary_json(out)
    assert data == {"lines_read": 31, "kept": 20, "dropped": {"empty_content": 10, "invalid_json": 1}}
    assert data["lines_read"] == data["kept"] + sum(data["dropped"].values())
    assert s.as_dict() == data
    assert pq.read_metadata(out / PARQUET_NAME).num_rows == 20
    assert len(pd.read_csv(out / CSV_NAME, dtype={"uid": str})) == 20
    assert len(quarantine(out)) == 11
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)  # staging dir is gone


def test_uid_leading_zeros_survive_csv_and_parquet(tmp_path: Path) -> None:
    uids = ["0000031909", "0000000001", "B000123456", "007"]
    path = write_lines(tmp_path / "trn.json", [rec(uid=u, content=f"{LONG} {u}") for u in uids])
    out = tmp_path / "out"
    run(path, out)
    assert pq.read_schema(out / PARQUET_NAME).field("uid").type == pa.string()
    assert pd.read_parquet(out / PARQUET_NAME)["uid"].tolist() == uids
    csv = pd.read_csv(out / CSV_NAME, dtype={"uid": str})
    assert csv["uid"].tolist() == uids
    assert list(csv.columns) == ["uid", "title", "content"]
    assert (out / CSV_NAME).read_text(encoding="utf-8").startswith("uid,title,content\n")


def test_csv_round_trips_quotes_commas_newlines(tmp_path: Path) -> None:
    content = 'Line one, with "quotes" and, commas.\nLine two; 日本製 🎁 ' + LONG
    path = write_lines(tmp_path / "trn.json", [rec(title='Tutu, "Pink"', content=content)])
    out = tmp_path / "out"
    run(path, out)
    row = pd.read_csv(out / CSV_NAME, dtype={"uid": str}).iloc[0]
    assert (row["title"], row["content"]) == ('Tutu, "Pink"', content)


def test_gzip_and_plain_give_identical_outputs(tmp_path: Path) -> None:
    lines = [rec(uid=f"{i:05d}", content=f"{LONG} &amp; {i}" if i % 2 else "") for i in range(50)]
    lines.append(b"\xff\xfe broken")
    plain = write_lines(tmp_path / "trn.json", lines)
    # gzip detected by magic bytes: the name says .json, the content is gzip
    zipped = write_lines(tmp_path / "trn-gz.json", lines, gz=True)
    run(plain, tmp_path / "p")
    run(zipped, tmp_path / "z")
    assert pq.read_table(tmp_path / "p" / PARQUET_NAME).equals(pq.read_table(tmp_path / "z" / PARQUET_NAME))
    for name in (CSV_NAME, QUARANTINE_NAME, SUMMARY_NAME):
        assert (tmp_path / "p" / name).read_bytes() == (tmp_path / "z" / name).read_bytes(), name


def test_small_batches_write_every_row(tmp_path: Path) -> None:
    lines = [rec(uid=str(i), content=f"{LONG} {i}") for i in range(25)]
    out = tmp_path / "out"
    s = run(write_lines(tmp_path / "trn.json", lines), out, PrepConfig(batch_rows=4))
    assert s.kept == 25
    assert pq.ParquetFile(out / PARQUET_NAME).metadata.num_row_groups == 7
    assert pd.read_parquet(out / PARQUET_NAME)["uid"].tolist() == [str(i) for i in range(25)]


def test_write_csv_false(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / CSV_NAME).write_text("stale", encoding="utf-8")
    run(write_lines(tmp_path / "trn.json", [rec()]), out, PrepConfig(write_csv=False))
    assert not (out / CSV_NAME).exists()
    assert (out / PARQUET_NAME).exists()


# ------------------------------------------------------------------------------------ damaged lines


def test_damaged_lines_are_quarantined_with_line_numbers(tmp_path: Path) -> None:
    good = rec()
    lines = [
        b"\xef\xbb\xbf" + rec(uid="bom"),  # 1 kept: a UTF-8 BOM on line 1 is tolerated
        rec(uid="aÿ", content=LONG + " 2"),  # 2 kept: non-ASCII uid, valid UTF-8
        good.replace(b"Girls", b"Girls \xff\xfe"),  # 3 invalid_utf8
        b"",  # 4 blank_line
        b"   \t",  # 5 blank_line
        b"[1, 2, 3]",  # 6 not_an_object
        b'"just a string"',  # 7 not_an_object
        good[:40],  # 8 invalid_json
        rec(uid="tail", content=LONG + " tail")[:50],  # 9 truncated_line (no final newline)
    ]
    out = tmp_path / "out"
    s = run(write_lines(tmp_path / "trn.json", lines, final_newline=False), out)
    q = quarantine(out)
    assert [(r["line"], r["reason"]) for r in q] == [
        (3, "invalid_utf8"),
        (4, "blank_line"),
        (5, "blank_line"),
        (6, "not_an_object"),
        (7, "not_an_object"),
        (8, "invalid_json"),
        (9, "truncated_line"),
    ]
    assert s.lines_read == 9 and s.kept == 2
    assert q[0]["raw"].startswith('{"uid":"0000031909","title":"Girls \ufffd\ufffd')
    assert pd.read_parquet(out / PARQUET_NAME)["uid"].tolist() == ["bom", "aÿ"]


def test_quarantine_raw_is_truncated(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "trn.json", [rec(), rec(uid="2", content="x" * 5000 + "日" * 50)[:-5]])
    out = tmp_path / "out"
    run(path, out, PrepConfig(quarantine_raw_chars=64))
    [q] = quarantine(out)
    assert q["reason"] == "invalid_json" and len(q["raw"]) == 64


# ---------------------------------------------------------------------------------------- bad input


def _assert_input_error(path: Path, out: Path, match: str, line: int | None = None) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        run(path, out)
    err = info.value
    assert str(path) in str(err)
    assert err.line == line
    assert not out.exists() or list(out.iterdir()) == []
    return err


def test_missing_file(tmp_path: Path) -> None:
    _assert_input_error(tmp_path / "nope.json", tmp_path / "out", "not found")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    _assert_input_error(path, tmp_path / "out", "empty")
    path.write_bytes(b"\n\n  \n")
    _assert_input_error(path, tmp_path / "out", "empty")
    path.write_bytes(gzip.compress(b""))
    _assert_input_error(path, tmp_path / "out", "empty")


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "trn.json"
    path.write_bytes(b"[\n" + rec() + b",\n" + rec(uid="2") + b"\n]\n")
    _assert_input_error(path, tmp_path / "out", "JSON array", line=1)
    path.write_bytes(b"\n[" + rec() + b"," + rec(uid="2") + b"]\n")  # one-line array of objects
    _assert_input_error(path, tmp_path / "out", "JSON array", line=2)


def test_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "trn.csv"
    path.write_text('uid,title,content\n0001,Tutu,"Soft tutu"\n', encoding="utf-8")
    err = _assert_input_error(path, tmp_path / "out", "CSV", line=1)
    assert "uid,title,content" in str(err)


def test_no_rows_survive(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "trn.json", [rec(content=""), rec(content="short"), b"{bad"])
    err = _assert_input_error(path, tmp_path / "out", "no rows survived the filters")
    for reason in ("empty_content", "short_content", "invalid_json"):
        assert reason in str(err)


def test_corrupt_gzip_is_an_input_error(tmp_path: Path) -> None:
    data = gzip.compress(b"\n".join(rec(uid=str(i), content=f"{LONG} {i}") for i in range(2000)))
    path = tmp_path / "trn.json.gz"
    path.write_bytes(data[: len(data) // 2])
    _assert_input_error(path, tmp_path / "out", "gzip stream is corrupt or truncated")


def test_error_keeps_existing_output_dir_and_old_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = write_lines(tmp_path / "good.json", [rec()])
    run(good, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write_lines(tmp_path / "bad.json", [rec(content="")])
    with pytest.raises(InputError):
        run(bad, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging dir, old set intact


def test_crash_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = core._Outputs.write_rows

    def failing(self: Any, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real(self, *args)

    monkeypatch.setattr(core._Outputs, "write_rows", failing)
    lines = [rec(uid=str(i), content=f"{LONG} {i}") for i in range(10)]
    out = tmp_path / "existing"
    out.mkdir()
    with pytest.raises(OSError, match="disk full"):
        run(write_lines(tmp_path / "trn.json", lines), out, PrepConfig(batch_rows=3))
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------------------- tracking


def test_run_prep_tracked_logs_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("PRODTUNE_MLFLOW_EXPERIMENT", "prep-test")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store keeps this test fast
    path = write_lines(tmp_path / "trn.json", [rec(), rec(uid="2", content=""), b"[1]"])
    s = run_prep_tracked(path, tmp_path / "out", PrepConfig(min_content_chars=50), progress=False)
    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    [run_] = client.search_runs([client.get_experiment_by_name("prep-test").experiment_id])
    assert run_.data.params["min_content_chars"] == "50"
    assert run_.data.metrics["lines_read"] == 3 == s.lines_read
    assert run_.data.metrics["kept"] == 1
    assert run_.data.metrics["dropped.empty_content"] == 1
    assert run_.data.metrics["dropped.not_an_object"] == 1
    assert run_.data.metrics["rows_per_s"] > 0
    names = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {SUMMARY_NAME, QUARANTINE_NAME, "quarantine-sample.json", "processed-head.json"} <= names
