"""Sampling: a seeded random sample of the processed catalogue, split into train and eval.

The population can be 1.2M rows of long text, so we never load it whole: the row count comes from
Parquet metadata, the chosen row indices are drawn up front, and batches are streamed past them.
Same input + same seed + same size = the same rows in the same order and the same split.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field

from components.common.atomic import atomic_path, write_json
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.tracking import step_run

REQUIRED_COLUMNS = ("uid", "title", "content")
PROCESSED_NAMES = ("trn-processed.parquet", "trn-processed.csv")


class SamplingConfig(StepConfig):
    n: int = Field(default=1000, gt=0, description="rows to sample")
    seed: int = Field(default=42, description="random seed; same seed, same rows")
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0, description="share of the sample held out")


@dataclass(frozen=True)
class SamplingSummary:
    population: int
    sampled: int
    train: int
    eval: int
    seed: int
    csv: str
    parquet: str


def resolve_input(path: str | Path) -> Path:
    """Accept the processed file itself or prep's output directory (Parquet preferred)."""
    path = Path(path)
    if path.is_dir():
        for name in PROCESSED_NAMES:
            if (path / name).is_file():
                return path / name
        raise InputError(f"no {' or '.join(PROCESSED_NAMES)} in directory", path=path)
    if not path.is_file():
        raise InputError("input file not found", path=path)
    if path.suffix not in (".parquet", ".csv"):
        raise InputError("expected a .parquet or .csv file from the prep step", path=path)
    return path


def _csv_convert_options() -> pacsv.ConvertOptions:
    # uid must stay a string: leading zeros are part of the id.
    return pacsv.ConvertOptions(column_types={c: pa.string() for c in REQUIRED_COLUMNS})


BATCH_ROWS = 65_536


def _batches(path: Path, batch_rows: int = BATCH_ROWS) -> tuple[pa.Schema, int, object]:
    """(schema, row count, iterator of record batches) without loading the file."""
    if path.suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"not a readable Parquet file: {exc}", path=path) from exc
        return pf.schema_arrow, pf.metadata.num_rows, pf.iter_batches(batch_size=batch_rows)
    try:
        # CSV has no row count in a header: count in one streaming pass, then stream again.
        reader = pacsv.open_csv(path, convert_options=_csv_convert_options())
        schema = reader.schema
        rows = sum(b.num_rows for b in reader)
    except pa.ArrowInvalid as exc:
        raise InputError(f"not a readable CSV file: {exc}", path=path) from exc
    read = pacsv.ReadOptions(block_size=max(1 << 16, batch_rows * 64))
    return schema, rows, pacsv.open_csv(path, read_options=read, convert_options=_csv_convert_options())


def _check_columns(schema: pa.Schema, path: Path) -> None:
    for col in REQUIRED_COLUMNS:
        if col not in schema.names:
            raise InputError("missing column", path=path, field=col)


def draw_indices(population: int, n: int, seed: int) -> np.ndarray:
    """Row indices of the sample, in sample order (a random permutation, not sorted)."""
    rng = np.random.default_rng(seed)
    return rng.choice(population, size=n, replace=False)


def take_rows(path: Path, indices: np.ndarray, batch_rows: int = BATCH_ROWS) -> pa.Table:
    """Stream the file once and keep the rows at `indices`, returned in the order of `indices`."""
    _, _, batches = _batches(path, batch_rows)
    wanted = np.sort(indices)
    pieces: list[pa.Table] = []
    offset = 0
    for batch in batches:
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            local = pa.array(wanted[lo:hi] - offset)
            pieces.append(pa.Table.from_batches([batch]).select(list(REQUIRED_COLUMNS)).take(local))
        offset += batch.num_rows
    table = (
        pa.concat_tables(pieces)
        if pieces
        else pa.table({c: pa.array([], pa.string()) for c in REQUIRED_COLUMNS})
    )
    # `table` is in file order (sorted indices); put it back into the random sample order.
    position_in_sorted = np.searchsorted(wanted, indices)
    return table.take(pa.array(position_in_sorted))


def sample_catalogue(
    input_path: str | Path, output_dir: str | Path, config: SamplingConfig
) -> SamplingSummary:
    path = resolve_input(input_path)
    schema, population, _ = _batches(path)
    _check_columns(schema, path)
    if population == 0:
        raise InputError("the processed catalogue has no rows", path=path)
    if config.n > population:
        raise InputError(
            f"asked for {config.n} rows but the catalogue has only {population}", path=path, field="n"
        )

    indices = draw_indices(population, config.n, config.seed)
    table = take_rows(path, indices)
    n_eval = round(config.n * config.eval_fraction)
    split = pa.array(["eval"] * n_eval + ["train"] * (config.n - n_eval), pa.string())
    table = table.append_column("split", split)
    # Cast defensively: a CSV population may have inferred other types for text columns.
    table = table.cast(pa.schema([(c, pa.string()) for c in (*REQUIRED_COLUMNS, "split")]))

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"data-{config.n}"
    with atomic_path(out / f"{stem}.parquet") as tmp:
        pq.write_table(table, tmp)
    with atomic_path(out / f"{stem}.csv") as tmp:
        pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
    summary = SamplingSummary(
        population=population,
        sampled=config.n,
        train=int(pc.sum(pc.equal(table["split"], "train")).as_py() or 0),
        eval=n_eval,
        seed=config.seed,
        csv=f"{stem}.csv",
        parquet=f"{stem}.parquet",
    )
    write_json(out / "sampling-summary.json", asdict(summary))
    return summary


def run_sampling_tracked(
    input_path: str | Path, output_dir: str | Path, config: SamplingConfig
) -> SamplingSummary:
    """`sample_catalogue` inside an MLflow run: params, counts and the sample as artifacts."""
    with step_run("sampling", {**config.model_dump(), "input": str(input_path)}) as tracker:
        start = time.perf_counter()
        summary = sample_catalogue(input_path, output_dir, config)
        tracker.log_metrics(
            {
                "population": summary.population,
                "sampled": summary.sampled,
                "train_rows": summary.train,
                "eval_rows": summary.eval,
                "seconds": time.perf_counter() - start,
            }
        )
        out = Path(output_dir)
        tracker.log_artifact(out / "sampling-summary.json")
        tracker.log_artifact(out / summary.csv, artifact_path="sample")
        return summary


def load_summary(output_dir: str | Path) -> dict[str, object]:
    return json.loads((Path(output_dir) / "sampling-summary.json").read_text(encoding="utf-8"))
