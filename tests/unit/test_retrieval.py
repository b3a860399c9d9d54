"""Embedded vector store, HNSW indexes, threshold semantics, persistence and the catalogue indexer."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.errors import InputError
from components.common.retrieval.ann import HNSWParams, available
from serving.retrieval.base import threshold_to_min_score
from serving.retrieval.embedded import EmbeddedStore
from serving.retrieval.indexer import embedding_text, index_catalogue


def _store_with_known_scores() -> EmbeddedStore:
    """Against the query [1, 0] these rows score exactly 1.0, 0.5, 0.25 and -1.0 (all exact in binary)."""
    store = EmbeddedStore(dim=2)
    vecs = np.array([[1.0, 0.0], [0.5, np.sqrt(0.75)], [0.25, np.sqrt(1 - 0.0625)], [-1.0, 0.0]])
    store.add(["001", "002", "003", "004"], ["a", "b", "c", "d"], ["A", "B", "C", "D"], vecs)
    return store


def test_threshold_percent_is_honoured_exactly_at_the_boundary():
    store = _store_with_known_scores()
    q = np.array([1.0, 0.0])
    assert [h.uid for h in store.search(q, k=10, min_score=threshold_to_min_score(50))] == ["001", "002"]
    # A hair above 50%: the row at exactly 0.5 goes.
    assert [h.uid for h in store.search(q, k=10, min_score=threshold_to_min_score(50.001))] == ["001"]
    assert [h.uid for h in store.search(q, k=10, min_score=threshold_to_min_score(25))] == [
        "001",
        "002",
        "003",
    ]
    assert [h.uid for h in store.search(q, k=10, min_score=threshold_to_min_score(100))] == ["001"]
    assert len(store.search(q, k=10, min_score=threshold_to_min_score(0))) == 3  # -1.0 is below 0%


def test_hits_are_best_first_and_limited_to_k():
    hits = _store_with_known_scores().search(np.array([2.0, 0.0]), k=2)  # the query is normalised too
    assert [(h.uid, h.score) for h in hits] == [("001", 1.0), ("002", 0.5)]
    assert hits[0].title == "a" and hits[0].content == "A"


@pytest.mark.parametrize("bad", [-1, 100.5])
def test_threshold_outside_0_100_is_rejected(bad):
    with pytest.raises(InputError, match="0-100"):
        threshold_to_min_score(bad)


def test_empty_store_and_wrong_dimension():
    store = EmbeddedStore(dim=3)
    assert store.search(np.ones(3), k=5) == []
    with pytest.raises(ValueError, match="dimension 2"):
        store.add(["x"], ["t"], ["c"], np.ones((1, 2)))


def _clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


LIBRARIES = [lib for lib in ("usearch", "hnswlib", "faiss") if available(lib)]


@pytest.mark.parametrize("library", LIBRARIES)
def test_ann_finds_the_exact_neighbours_and_returns_exact_scores(library):
    data = _clustered(4000, 32, 40, seed=1)
    queries = _clustered(30, 32, 40, seed=2)
    store = EmbeddedStore(dim=32)
    store.add([f"{i:06d}" for i in range(len(data))], ["t"] * len(data), ["c"] * len(data), data)
    exact = [[h.uid for h in store.search(q, k=10)] for q in queries]
    store.build_index(library, HNSWParams(m=16, ef_construction=64, ef_search=64, build_threads=1))
    approx = [store.search(q, k=10) for q in queries]
    recall = np.mean([len({h.uid for h in a} & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9
    # Scores of ANN hits are true cosines (the threshold applies to them, not to an estimate).
    by_uid = {f"{i:06d}": data[i] for i in range(len(data))}
    for q, hits in zip(queries, approx, strict=True):
        for h in hits:
            assert h.score == pytest.approx(float(by_uid[h.uid] @ (q / np.linalg.norm(q))), abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # exact=True bypasses the index.
    assert [h.uid for h in store.search(queries[0], k=10, exact=True)] == exact[0]


@pytest.mark.parametrize("library", LIBRARIES)
def test_threshold_cuts_ann_hits_on_true_cosines(library):
    store = _store_with_known_scores()
    store.build_index(library, HNSWParams(m=8, ef_construction=16, ef_search=16, build_threads=1))
    q = np.array([1.0, 0.0])
    assert [h.uid for h in store.search(q, k=10, min_score=threshold_to_min_score(50))] == ["001", "002"]
    assert [h.uid for h in store.search(q, k=10, min_score=threshold_to_min_score(50.001))] == ["001"]


@pytest.mark.parametrize("library", LIBRARIES)
def test_save_and_load_round_trip_keeps_uids_and_index_and_adds_are_incremental(tmp_path, library):
    data = _clustered(600, 16, 10, seed=3)
    store = EmbeddedStore(dim=16)
    uids = [f"{i:010d}" for i in range(500)]  # leading zeros must survive
    store.add(uids, [f"title {i}" for i in range(500)], [f"content {i}" for i in range(500)], data[:500])
    store.build_index(library, HNSWParams(m=8, ef_construction=32, ef_search=32, build_threads=1))
    store.save(tmp_path / "vs")
    assert (tmp_path / "vs" / f"index.{library}").is_file()
    loaded = EmbeddedStore.load(tmp_path / "vs")
    assert loaded.count() == 500 and loaded.index is not None and len(loaded.index) == 500
    assert loaded.uids == uids
    q = data[123]
    assert loaded.search(q, k=5) == store.search(q, k=5)
    assert loaded.search(q, k=1)[0].uid == "0000000123"
    # Rows added after the build go straight into the graph: found without a rebuild, then saved.
    loaded.add([f"new{i}" for i in range(100)], ["t"] * 100, ["c"] * 100, data[500:])
    assert len(loaded.index) == 600
    assert loaded.search(data[555], k=1)[0].uid == "new55"
    loaded.save(tmp_path / "vs")
    again = EmbeddedStore.load(tmp_path / "vs", ef_search=64, mmap=True)
    assert again.count() == 600 and len(again.index) == 600 and again.index_params.ef_search == 64
    assert again.search(data[555], k=1)[0].uid == "new55"


def test_a_stale_index_is_removed_and_a_mismatched_one_refused(tmp_path):
    data = _clustered(50, 8, 3, seed=4)
    store = EmbeddedStore(dim=8)
    store.add([str(i) for i in range(50)], ["t"] * 50, ["c"] * 50, data)
    (tmp_path / "vs").mkdir()
    (tmp_path / "vs" / "ivf.npz").write_bytes(b"old layout")
    (tmp_path / "vs" / "index.faiss").write_bytes(b"other library")
    store.save(tmp_path / "vs")  # no index: exact search, and no file that points at other rows
    assert sorted(p.name for p in (tmp_path / "vs").iterdir()) == [
        "meta.parquet",
        "store.json",
        "vectors.npy",
    ]
    if LIBRARIES:
        lib = LIBRARIES[0]
        store.build_index(lib, HNSWParams(m=8, ef_construction=16, ef_search=16, build_threads=1))
        store.save(tmp_path / "vs")
        info = json.loads((tmp_path / "vs" / "store.json").read_text())
        info["count"] = 49
        small = EmbeddedStore(dim=8)
        small.add([str(i) for i in range(49)], ["t"] * 49, ["c"] * 49, data[:49])
        small.save(tmp_path / "small")
        (tmp_path / "small" / f"index.{lib}").write_bytes((tmp_path / "vs" / f"index.{lib}").read_bytes())
        (tmp_path / "small" / "store.json").write_text(json.dumps({**info, "index": info["index"]}))
        with pytest.raises(InputError, match="rebuild the index"):
            EmbeddedStore.load(tmp_path / "small")


def test_load_incomplete_store_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"vectors\.npy missing"):
        EmbeddedStore.load(tmp_path)


class CountingEmbedder:
    """Deterministic bag-of-characters vectors; records every batch it was asked to embed."""

    dim = 26

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts, *, batch_size=64):
        self.batches.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out


def _catalogue(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_indexer_embeds_title_and_content_in_batches_and_counts_skips(tmp_path):
    rows = [{"uid": f"{i:04d}", "title": f"Product {i}", "content": "x" * 50} for i in range(10)]
    rows[3]["title"] = "  "  # no title: skipped and counted, not silently lost
    path = _catalogue(tmp_path / "trn-processed.parquet", rows)
    store, embedder = EmbeddedStore(dim=26), CountingEmbedder()
    summary = index_catalogue(path, store, embedder, batch_size=4, content_chars=20, progress=False)
    assert summary.as_dict() == {"rows_read": 10, "indexed": 9, "skipped": {"empty_title_or_uid": 1}}
    assert [len(b) for b in embedder.batches] == [3, 4, 2]  # row 3 was in the first batch of 4
    assert embedder.batches[0][0] == "Product 0. " + "x" * 20
    assert store.count() == 9 and "0003" not in store.uids and store.uids[0] == "0000"


def test_indexer_limit_and_missing_column(tmp_path):
    rows = [{"uid": str(i), "title": f"T{i}", "content": ""} for i in range(7)]
    path = _catalogue(tmp_path / "c.parquet", rows)
    store = EmbeddedStore(dim=26)
    assert (
        index_catalogue(path, store, CountingEmbedder(), batch_size=3, limit=5, progress=False).indexed == 5
    )
    bad = _catalogue(tmp_path / "bad.parquet", [{"uid": "1", "title": "t"}])
    with pytest.raises(InputError, match="missing column"):
        index_catalogue(bad, store, CountingEmbedder(), progress=False)


def test_embedding_text_layout():
    assert embedding_text(" Tutu ", "Pink and long", 4) == "Tutu. Pink"
    assert embedding_text("Tutu", "", 100) == "Tutu"


def test_indexer_reuses_the_vectors_of_unchanged_rows(tmp_path):
    rows = [{"uid": f"{i:04d}", "title": f"Product {i}", "content": f"about {i}"} for i in range(6)]
    first = EmbeddedStore(dim=26)
    index_catalogue(_catalogue(tmp_path / "a.parquet", rows), first, CountingEmbedder(), progress=False)
    first.save(tmp_path / "vs")
    rows[2]["content"] = "a changed description"  # only this row's text changed
    rows.append({"uid": "0099", "title": "Brand new", "content": ""})
    second, embedder = EmbeddedStore(dim=26), CountingEmbedder()
    summary = index_catalogue(
        _catalogue(tmp_path / "b.parquet", rows),
        second,
        embedder,
        progress=False,
        reuse=EmbeddedStore.load(tmp_path / "vs", mmap=True),
    )
    assert summary.indexed == 7 and summary.reused == 5
    assert embedder.batches == [["Product 2. a changed description", "Brand new"]]
    assert np.array_equal(second.vectors[0], first.vectors[0])
    assert second.uids == [r["uid"] for r in rows]
    assert second.text_sha is not None and second.text_sha[2] != first.text_sha[2]
