import pandas as pd
import pytest

from components.common.errors import InputError
from components.synthesis.cache import CachedReply, ReplyCache, input_hash
from components.synthesis.core import (
    SynthesisConfig,
    estimate_cost,
    find_input,
    read_products,
    screen_rows,
    teacher_subset,
)


def write_csv(path, rows):
    pd.DataFrame(rows, columns=["uid", "title", "content", "split"]).to_csv(path, index=False)
    return path


def test_uid_keeps_leading_zeros_csv_and_parquet(tmp_path):
    rows = [["0001", "T", "C c c", "train"]]
    frame = read_products(write_csv(tmp_path / "data-1.csv", rows))
    assert frame.uid.tolist() == ["0001"]
    pd.DataFrame(rows, columns=["uid", "title", "content", "split"]).to_parquet(tmp_path / "x.parquet")
    assert read_products(tmp_path / "x.parquet").uid.tolist() == ["0001"]


def test_directory_input_prefers_parquet_and_rejects_ambiguity(tmp_path):
    with pytest.raises(InputError, match="no data-<N>"):
        find_input(tmp_path)
    with pytest.raises(InputError, match="input not found"):
        find_input(tmp_path / "missing")
    write_csv(tmp_path / "data-2.csv", [])
    assert find_input(tmp_path).name == "data-2.csv"
    pd.DataFrame({"uid": []}).to_parquet(tmp_path / "data-2.parquet")
    assert find_input(tmp_path).name == "data-2.parquet"
    write_csv(tmp_path / "data-3.csv", [])
    (tmp_path / "data-2.parquet").unlink()
    with pytest.raises(InputError, match="several"):
        find_input(tmp_path)


def test_missing_column_is_input_error(tmp_path):
    path = tmp_path / "data-1.csv"
    path.write_text("uid,title,split\n1,a,train\n")
    with pytest.raises(InputError, match="missing column") as err:
        read_products(path)
    assert err.value.field == "content"


def test_screen_rows_quarantines_what_cannot_be_asked(tmp_path):
    frame = read_products(
        write_csv(
            tmp_path / "data-5.csv",
            [
                ["1", "A", "text", "train"],
                ["2", "", "text", "train"],
                ["3", "C", "  ", "eval"],
                ["1", "A again", "text", "eval"],
                ["4", "D", "text", "test"],
            ],
        )
    )
    products, quarantined = screen_rows(frame)
    assert [p.uid for p in products] == ["1"]
    assert [(q["uid"], q["reason"]) for q in quarantined] == [
        ("2", "empty_input"), ("3", "empty_input"), ("1", "duplicate_uid"), ("4", "invalid_split")
    ]  # fmt: skip


def test_teacher_subset_keeps_each_splits_share_in_sample_order(tmp_path):
    rows = [[str(i), f"T{i}", "text", "eval" if i % 5 == 2 else "train"] for i in range(200)]
    products, _ = screen_rows(read_products(write_csv(tmp_path / "data-200.csv", rows)))
    asked = teacher_subset(products, 40)
    assert len(asked) == 40 and sum(p.split == "eval" for p in asked) == 8  # 20% of the sample, 20% asked
    assert [p.row for p in asked] == sorted(p.row for p in asked)  # the sample's (seeded) order
    evals = [p for p in products if p.split == "eval"]
    assert [p.uid for p in asked if p.split == "eval"] == [p.uid for p in evals[:8]]
    assert teacher_subset(products, None) == products == teacher_subset(products, 500)
    assert len(teacher_subset(products, 7)) == 7


def test_cost_uses_price_table_per_million_tokens():
    cfg = SynthesisConfig(model="m", prices={"m": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}})
    assert estimate_cost(cfg, 1_000_000, 500_000) == pytest.approx(0.45)
    assert estimate_cost(SynthesisConfig(model="unknown"), 10, 10) is None


def test_cache_roundtrip_and_staleness(tmp_path):
    cache = ReplyCache(tmp_path, "qa-v1-abc", "org/model:latest")
    sha = input_hash("title", "content")
    entry = cache.load("B00/weird uid", sha)
    assert entry.replies == []
    cache.append(entry, CachedReply("{}", {"total_tokens": 3}, "stop"))
    again = cache.load("B00/weird uid", sha)
    assert [r.content for r in again.replies] == ["{}"]
    assert cache.path("B00/weird uid").parent == cache.dir  # the odd uid did not escape the dir
    # the product text changed: the old reply is not reused
    assert cache.load("B00/weird uid", input_hash("title", "new content")).replies == []
    # another model or prompt version has its own entries
    assert ReplyCache(tmp_path, "qa-v2-def", "org/model:latest").load("B00/weird uid", sha).replies == []
