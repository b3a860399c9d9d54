"""prep: raw `trn.json` (JSON lines, plain or gzip) -> cleaned, filtered `trn-processed.{parquet,csv}`.

Streaming and bounded in memory: lines are read as bytes, parsed with orjson, cleaned
(`components.prep.clean`), filtered and written in batches of `batch_rows` with pyarrow. Memory holds
one batch plus a 64-bit hash per kept row for de-duplication (~70 MB for 1.2M rows).

Every line read is either kept or dropped with one reason; dropped lines go to `quarantine.jsonl`
and `prep-summary.json` reconciles: `lines_read == kept + sum(dropped.values())`.

Decisions:
- `min_content_chars` (default 100) is applied AFTER cleaning: a description that is mostly markup or
  entities is not 100 characters of text. Length is counted in Unicode code points.
- Duplicates: a row whose cleaned (title, content) pair equals an earlier kept row's is dropped with
  reason `duplicate` (the first one is kept). The same title with a different description is kept:
  catalogue variants (sizes, colours) often share a title and their descriptions are distinct
  training signal. Pairs are compared by their 64-bit Python hash (kept per row instead of the text:
  ~70 MB for 1.2M rows; collision odds ~1e-7 at 1.2M rows, 3x faster than a blake2b digest).
- Checks run in this order and the first failing one is the reason: line damage (`blank_line`,
  `invalid_utf8`, `truncated_line`, `invalid_json`, `not_an_object`), then uid (`missing_uid`,
  `invalid_uid`), title presence (`missing_title`, `invalid_title`), content (`missing_content`,
  `invalid_content`, `empty_content`, `short_content`), the cleaned title (`empty_title`), `duplicate`.
  Content is checked before the cleaned title so that titles of the ~40% rows without a description
  are never cleaned (speed); the order only decides which reason a row with two faults gets.
- "Not JSON lines at all" (an `InputError`, nothing written) is decided on the first non-blank line:
  it starts with `[` and is not a one-line array of scalars (a JSON array file), or it is not valid
  JSON and contains no `{` (a CSV/TSV or other text file). Any later bad line is damage: quarantined.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import shutil
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field
from tqdm import tqdm

from components.common.atomic import write_json
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.tracking import step_run
from components.prep.clean import clean_text, clean_title

PARQUET_NAME = "trn-processed.parquet"
CSV_NAME = "trn-processed.csv"
QUARANTINE_NAME = "quarantine.jsonl"
SUMMARY_NAME = "prep-summary.json"
OUTPUT_NAMES = (PARQUET_NAME, CSV_NAME, QUARANTINE_NAME, SUMMARY_NAME)

SCHEMA = pa.schema([("uid", pa.string()), ("title", pa.string()), ("content", pa.string())])
_GZIP_MAGIC = b"\x1f\x8b"
_SAMPLES_PER_REASON = 20


class PrepConfig(StepConfig):
    """Configuration of the prep step (pipelines/configs/prep.yaml)."""

    min_content_chars: int = Field(default=100, ge=0, description="minimum cleaned description length")
    dedupe: bool = Field(default=True, description="drop rows whose cleaned (title, content) was seen")
    batch_rows: int = Field(default=50_000, ge=1, le=1_000_000, description="rows per write batch")
    write_csv: bool = Field(default=True, description="also write trn-processed.csv")
    parquet_compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    quarantine_raw_chars: int = Field(
        default=500, ge=0, description="raw line text kept per quarantine record"
    )


@dataclass
class PrepSummary:
    lines_read: int
    kept: int
    dropped: dict[str, int]
    seconds: float = 0.0
    output_dir: Path | None = None
    # Up to 20 quarantine records per reason, for a quick look (logged to MLflow).
    samples: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"lines_read": self.lines_read, "kept": self.kept, "dropped": dict(self.dropped)}

    @property
    def rows_per_s(self) -> float:
        return self.lines_read / self.seconds if self.seconds > 0 else 0.0

    def path(self, name: str) -> Path:
        if self.output_dir is None:
            raise ValueError("summary has no output_dir")
        return self.output_dir / name


# ---------------------------------------------------------------------------------------------------
# Input


def _open_binary(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(line stream, raw file): gzip detected by magic bytes, not by the file name."""
    raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - returned; closed by the caller
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=1 << 20), raw
    return raw, raw


def _sniff_first_line(line: bytes, path: Path, lineno: int) -> None:
    """Raise InputError when the first non-blank line shows the file is not JSON lines at all."""
    text = line.strip()
    preview = text[:80].decode("utf-8", "replace")
    if text.startswith(b"["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None  # an array spread over several lines
        if not (isinstance(value, list) and value and not any(isinstance(v, dict) for v in value)):
            raise InputError(
                "looks like a JSON array, not JSON lines (expected one JSON object per line)",
                path=path,
                line=lineno,
            )
        return
    if text.startswith(b"{") or b"{" in text:
        return
    try:
        orjson.loads(text)
        return  # a JSON scalar: quarantined as not_an_object
    except orjson.JSONDecodeError:
        pass
    if any(sep in text for sep in (b",", b"\t", b";")):
        kind = "looks like CSV/TSV, not JSON lines"
    else:
        kind = "is not JSON lines (the first line is not a JSON object)"
    raise InputError(f"{kind}; first line: {preview!r}", path=path, line=lineno)


# ---------------------------------------------------------------------------------------------------
# Output


class _Outputs:
    """Batched writers into the staging dir: Parquet, CSV and the quarantine file."""

    def __init__(self, staging: Path, config: PrepConfig) -> None:
        self.config = config
        compression = None if config.parquet_compression == "none" else config.parquet_compression
        self.parquet = pq.ParquetWriter(staging / PARQUET_NAME, SCHEMA, compression=compression)
        self.csv_file: BinaryIO | None = None
        self.csv: pacsv.CSVWriter | None = None
        if config.write_csv:
            self.csv_file = open(staging / CSV_NAME, "wb")  # noqa: SIM115 - closed in close()
            # Header unquoted like the original trn-processed.csv; values are always quoted.
            self.csv_file.write(b"uid,title,content\n")
            self.csv = pacsv.CSVWriter(
                self.csv_file, SCHEMA, write_options=pacsv.WriteOptions(include_header=False)
            )
        self.quarantine = open(staging / QUARANTINE_NAME, "wb", buffering=1 << 20)  # noqa: SIM115
        self.rows_written = 0

    def write_rows(self, uids: list[str], titles: list[str], contents: list[str]) -> None:
        if not uids:
            return
        table = pa.Table.from_arrays(
            [pa.array(uids, pa.string()), pa.array(titles, pa.string()), pa.array(contents, pa.string())],
            schema=SCHEMA,
        )
        self.parquet.write_table(table)
        if self.csv is not None:
            self.csv.write_table(table)
        self.rows_written += table.num_rows

    def close(self) -> None:
        self.parquet.close()
        if self.csv is not None:
            self.csv.close()
        if self.csv_file is not None:
            self.csv_file.close()
        self.quarantine.close()


# ---------------------------------------------------------------------------------------------------
# The streaming pass


class _Pass:
    """One pass over the input: classifies each line, keeps or quarantines it."""

    def __init__(self, path: Path, out: _Outputs, config: PrepConfig) -> None:
        self.path = path
        self.out = out
        self.config = config
        self.dropped: Counter[str] = Counter()
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.kept = 0
        self.lines_read = 0
        self.seen: set[int] = set()
        self.uids: list[str] = []
        self.titles: list[str] = []
        self.contents: list[str] = []

    def drop(self, lineno: int, reason: str, uid: Any, line: bytes) -> None:
        self.dropped[reason] += 1
        n = self.config.quarantine_raw_chars
        raw = line[: 4 * n].decode("utf-8", "replace")[:n].rstrip("\r\n")
        record = {"line": lineno, "reason": reason, "uid": uid, "raw": raw}
        self.out.quarantine.write(orjson.dumps(record) + b"\n")
        bucket = self.samples.setdefault(reason, [])
        if len(bucket) < _SAMPLES_PER_REASON:
            bucket.append(record)

    def flush(self) -> None:
        self.out.write_rows(self.uids, self.titles, self.contents)
        self.uids, self.titles, self.contents = [], [], []

    def bad_line_reason(self, line: bytes) -> str:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_utf8"
        # Only the last line can lack its newline: a cut-off download or copy.
        return "invalid_json" if line.endswith(b"\n") else "truncated_line"

    def check_record(self, obj: dict[str, Any]) -> tuple[str, Any, str, str]:
        """(reason to drop or "", uid, cleaned title, cleaned content) for one parsed object."""
        uid = obj.get("uid")
        if type(uid) is not str:
            return ("missing_uid" if uid is None else "invalid_uid"), uid, "", ""
        uid = uid.strip()
        if not uid:
            return "missing_uid", None, "", ""
        title = obj.get("title")
        if type(title) is not str:
            return ("missing_title" if title is None else "invalid_title"), uid, "", ""
        content = obj.get("content")
        if type(content) is not str:
            return ("missing_content" if content is None else "invalid_content"), uid, "", ""
        if not content:
            return "empty_content", uid, "", ""
        content = clean_text(content)
        if not content:
            return "empty_content", uid, "", ""
        if len(content) < self.config.min_content_chars:
            return "short_content", uid, "", ""
        title = clean_title(title)
        if not title:
            return "empty_title", uid, "", ""
        return "", uid, title, content

    def run(self, lines: Iterator[bytes], on_progress: Any) -> None:
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        dedupe, batch_rows = self.config.dedupe, self.config.batch_rows
        seen, drop, check = self.seen, self.drop, self.check_record
        sniffed = False
        lineno = 0
        try:
            for lineno, line in enumerate(lines, 1):
                if lineno & 0x3FFF == 0:
                    on_progress()
                if line.isspace():
                    drop(lineno, "blank_line", None, line)
                    continue
                if not sniffed:
                    if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                        line = line[len(codecs.BOM_UTF8) :]
                    _sniff_first_line(line, self.path, lineno)
                    sniffed = True
                try:
                    obj = loads(line)
                except decode_error:
                    drop(lineno, self.bad_line_reason(line), None, line)
                    continue
                if type(obj) is not dict:
                    drop(lineno, "not_an_object", None, line)
                    continue

                reason, uid, title, content = check(obj)
                if reason:
                    drop(lineno, reason, uid, line)
                    continue
                if dedupe:
                    key = hash((title, content))
                    if key in seen:
                        drop(lineno, "duplicate", uid, line)
                        continue
                    seen.add(key)
                self.uids.append(uid)
                self.titles.append(title)
                self.contents.append(content)
                self.kept += 1
                if len(self.uids) >= batch_rows:
                    self.flush()
        finally:
            self.lines_read = lineno
        self.flush()


def _reconcile(lines_read: int, kept: int, dropped: dict[str, int]) -> None:
    # Not an `assert`: it must hold under `python -O` too.
    if lines_read != kept + sum(dropped.values()):
        raise RuntimeError(f"prep counts do not reconcile: {lines_read=} != {kept=} + dropped={dropped}")


def run_prep(
    input_path: str | Path, output_dir: str | Path, config: PrepConfig | None = None, *, progress: bool = True
) -> PrepSummary:
    """Clean and filter `input_path` into `output_dir` (see the module docstring).

    Outputs are staged in a hidden temp dir inside `output_dir` and moved into place only on success;
    `prep-summary.json` is written last, so its presence marks a complete set. On any error nothing new
    is left behind. Raises InputError for input that is missing, empty or not JSON lines, and when no
    row survives the filters.
    """
    config = config or PrepConfig()
    path, output_dir = Path(input_path), Path(output_dir)
    if not path.exists():
        raise InputError("input file not found", path=path)
    if not path.is_file():
        raise InputError("input is not a regular file", path=path)
    if path.stat().st_size == 0:
        raise InputError("input file is empty", path=path)

    created_dir = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prep-staging-", dir=output_dir))
    started = time.perf_counter()
    try:
        summary = _run_into(path, staging, config, progress)
        summary.seconds = time.perf_counter() - started
        _publish(staging, output_dir, summary, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_dir and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    summary.output_dir = output_dir
    return summary


def _run_into(path: Path, staging: Path, config: PrepConfig, progress: bool) -> PrepSummary:
    stream, raw = _open_binary(path)
    out = _Outputs(staging, config)
    pas = _Pass(path, out, config)
    bar = tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc="prep", disable=not progress, mininterval=1
    )
    done = 0

    def on_progress() -> None:
        nonlocal done
        pos = raw.tell()
        bar.update(pos - done)
        done = pos

    try:
        pas.run(stream, on_progress)
        on_progress()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(
            f"gzip stream is corrupt or truncated after line {pas.lines_read or '?'}: {exc}", path=path
        ) from exc
    finally:
        bar.close()
        stream.close()
        raw.close()
        out.close()

    dropped = dict(sorted(pas.dropped.items()))
    if pas.lines_read == 0 or pas.lines_read == dropped.get("blank_line", 0):
        raise InputError("input file is empty (no data lines)", path=path)
    if pas.kept == 0:
        raise InputError(f"no rows survived the filters; see quarantine counts: {dropped}", path=path)
    if out.rows_written != pas.kept:
        raise RuntimeError(f"wrote {out.rows_written} rows but kept {pas.kept}")
    _reconcile(pas.lines_read, pas.kept, dropped)
    samples = [record for bucket in pas.samples.values() for record in bucket]
    return PrepSummary(lines_read=pas.lines_read, kept=pas.kept, dropped=dropped, samples=samples)


def _publish(staging: Path, output_dir: Path, summary: PrepSummary, config: PrepConfig) -> None:
    # Remove the old completion marker first: a crash mid-publish then leaves no summary at all.
    (output_dir / SUMMARY_NAME).unlink(missing_ok=True)
    if not config.write_csv:
        (output_dir / CSV_NAME).unlink(missing_ok=True)  # a stale CSV from an earlier run would mislead
    for name in (PARQUET_NAME, CSV_NAME, QUARANTINE_NAME):
        if (staging / name).exists():
            os.replace(staging / name, output_dir / name)
    _reconcile(summary.lines_read, summary.kept, summary.dropped)
    write_json(output_dir / SUMMARY_NAME, summary.as_dict())


# ---------------------------------------------------------------------------------------------------
# Tracking


def run_prep_tracked(
    input_path: str | Path, output_dir: str | Path, config: PrepConfig | None = None, *, progress: bool = True
) -> PrepSummary:
    """`run_prep` inside an MLflow run (`step_run("prep")`): params, counts, rows/s and small artifacts.

    The Parquet/CSV are pipeline artifacts (too big for MLflow); the run gets the summary, a sample of
    the quarantine (up to 20 records per reason), the full quarantine when it is under 20 MB, and the
    first 20 processed rows.
    """
    config = config or PrepConfig()
    params = {"input": str(input_path), **config.model_dump()}
    with step_run("prep", params) as tracker:
        summary = run_prep(input_path, output_dir, config, progress=progress)
        metrics: dict[str, float] = {
            "lines_read": summary.lines_read,
            "kept": summary.kept,
            "dropped_total": sum(summary.dropped.values()),
            "seconds": summary.seconds,
            "rows_per_s": summary.rows_per_s,
        }
        metrics.update({f"dropped.{reason}": n for reason, n in summary.dropped.items()})
        tracker.log_metrics(metrics)
        tracker.log_artifact(summary.path(SUMMARY_NAME))
        tracker.log_dict(summary.samples, "quarantine-sample.json")
        quarantine = summary.path(QUARANTINE_NAME)
        if quarantine.stat().st_size <= 20 * 1024 * 1024:
            tracker.log_artifact(quarantine)
        head = next(pq.ParquetFile(summary.path(PARQUET_NAME)).iter_batches(batch_size=20), None)
        tracker.log_dict(head.to_pylist() if head is not None else [], "processed-head.json")
    return summary
