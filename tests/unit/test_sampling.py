"""Sampling: determinism, split, streaming selection, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.errors import InputError
from components.sampling.core import SamplingConfig, draw_indices, sample_catalogue, take_rows


def _catalogue(tmp_path, rows: int = 500, row_group: int = 37):
    uids = [f"{i:010d}" for i in range(rows)]  # leading zeros must survive
    table = pa.table(
        {
            "uid": uids,
            "title": [f"Product {i}" for i in range(rows)],
            "content": [f"Description of product {i}, " + "x" * 100 for i in range(rows)],
        }
    )
    path = tmp_path / "trn-processed.parquet"
    pq.write_table(table, path, row_group_size=row_group)
    return path, table


def test_same_seed_same_rows_and_split(tmp_path):
    path, _ = _catalogue(tmp_path)
    cfg = SamplingConfig(n=50, seed=7, eval_fraction=0.2)
    a = sample_catalogue(path, tmp_path / "a", cfg)
    b = sample_catalogue(path, tmp_path / "b", cfg)
    assert (tmp_path / "a" / "data-50.csv").read_bytes() == (tmp_path / "b" / "data-50.csv").read_bytes()
    assert a == b
    other = sample_catalogue(path, tmp_path / "c", SamplingConfig(n=50, seed=8, eval_fraction=0.2))
    assert other.sampled == 50
    assert (tmp_path / "c" / "data-50.csv").read_bytes() != (tmp_path / "a" / "data-50.csv").read_bytes()


def test_split_counts_and_summary(tmp_path):
    path, _ = _catalogue(tmp_path)
    summary = sample_catalogue(path, tmp_path / "out", SamplingConfig(n=40, seed=1, eval_fraction=0.1))
    df = pd.read_parquet(tmp_path / "out" / "data-40.parquet")
    assert list(df.columns) == ["uid", "title", "content", "split"]
    assert (df["split"] == "eval").sum() == 4 == summary.eval
    assert (df["split"] == "train").sum() == 36 == summary.train
    on_disk = json.loads((tmp_path / "out" / "sampling-summary.json").read_text())
    assert on_disk["population"] == 500 and on_disk["sampled"] == 40 and on_disk["seed"] == 1


def test_rows_are_real_distinct_and_keep_leading_zeros(tmp_path):
    path, table = _catalogue(tmp_path)
    sample_catalogue(path, tmp_path / "out", SamplingConfig(n=100, seed=3))
    df = pd.read_csv(tmp_path / "out" / "data-100.csv", dtype=str, keep_default_na=False)
    assert df["uid"].is_unique
    assert all(len(u) == 10 for u in df["uid"])  # "0000000042", not 42
    population = table.to_pandas().set_index("uid")
    for row in df.itertuples():
        assert population.loc[row.uid, "title"] == row.title
        assert population.loc[row.uid, "content"] == row.content
    assert pq.read_schema(tmp_path / "out" / "data-100.parquet").field("uid").type == pa.string()


@pytest.mark.parametrize("batch_rows", [1, 13, 64, 10_000])
def test_take_rows_streams_in_sample_order(tmp_path, batch_rows):
    path, table = _catalogue(tmp_path, rows=300)
    indices = draw_indices(300, 60, seed=11)
    got = take_rows(path, indices, batch_rows=batch_rows)
    expected = table.take(pa.array(indices))
    assert got.column("uid").to_pylist() == expected.column("uid").to_pylist()


def test_csv_input_matches_parquet_input(tmp_path):
    path, table = _catalogue(tmp_path)
    csv_path = tmp_path / "trn-processed.csv"
    table.to_pandas().to_csv(csv_path, index=False)
    cfg = SamplingConfig(n=30, seed=5)
    sample_catalogue(path, tmp_path / "p", cfg)
    sample_catalogue(csv_path, tmp_path / "c", cfg)
    assert (tmp_path / "p" / "data-30.csv").read_bytes() == (tmp_path / "c" / "data-30.csv").read_bytes()


def test_prep_output_dir_is_accepted(tmp_path):
    _catalogue(tmp_path)
    summary = sample_catalogue(tmp_path, tmp_path / "out", SamplingConfig(n=10))
    assert summary.sampled == 10


def test_more_rows_than_exist_is_a_clear_error(tmp_path):
    path, _ = _catalogue(tmp_path, rows=20)
    with pytest.raises(InputError) as err:
        sample_catalogue(path, tmp_path / "out", SamplingConfig(n=21))
    assert "only 20" in str(err.value) and "trn-processed.parquet" in str(err.value)
    assert err.value.field == "n"
    assert not (tmp_path / "out" / "data-21.csv").exists()


def test_missing_column_and_missing_file(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"uid": ["1"], "title": ["t"]}), path)
    with pytest.raises(InputError) as err:
        sample_catalogue(path, tmp_path / "out", SamplingConfig(n=1))
    assert err.value.field == "content"
    with pytest.raises(InputError, match="not found"):
        sample_catalogue(tmp_path / "nope.parquet", tmp_path / "out", SamplingConfig(n=1))


def test_config_validation():
    with pytest.raises(ValueError):
        SamplingConfig(n=0)
    with pytest.raises(ValueError):
        SamplingConfig(eval_fraction=1.0)
    with pytest.raises(ValueError):
        SamplingConfig.model_validate({"n": 5, "sedd": 3})  # typo is an error, not ignored


def test_draw_indices_is_a_permutation_subset():
    idx = draw_indices(1000, 200, seed=0)
    assert len(set(idx.tolist())) == 200 and idx.min() >= 0 and idx.max() < 1000
    assert not np.all(np.diff(idx) > 0)  # sample order is random, not file order
