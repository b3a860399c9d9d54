"""Embedded vector store, IVF index, threshold semantics, persistence and the catalogue indexer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.errors import InputError
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


def test_ivf_finds_the_exact_neighbours_and_returns_exact_scores():
    data = _clustered(4000, 32, 40, seed=1)
    queries = _clustered(30, 32, 40, seed=2)
    store = EmbeddedStore(dim=32, nprobe=8)
    store.add([f"{i:06d}" for i in range(len(data))], ["t"] * len(data), ["c"] * len(data), data)
    exact = [[h.uid for h in store.search(q, k=10)] for q in queries]
    store.build_index(nlist=64)
    approx = [store.search(q, k=10) for q in queries]
    recall = np.mean([len({h.uid for h in a} & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9
    # Scores of IVF hits are true cosines (the threshold applies to them, not to an estimate).
    by_uid = {f"{i:06d}": data[i] for i in range(len(data))}
    for q, hits in zip(queries, approx, strict=True):
        for h in hits:
            assert h.score == pytest.approx(float(by_uid[h.uid] @ (q / np.linalg.norm(q))), abs=1e-5)
    # exact=True bypasses the index.
    assert [h.uid for h in store.search(queries[0], k=10, exact=True)] == exact[0]


def test_save_and_load_round_trip_keeps_uids_and_index(tmp_path):
    data = _clustered(500, 16, 10, seed=3)
    store = EmbeddedStore(dim=16)
    uids = [f"{i:010d}" for i in range(500)]  # leading zeros must survive
    store.add(uids, [f"title {i}" for i in range(500)], [f"content {i}" for i in range(500)], data)
    store.build_index(nlist=10)
    store.save(tmp_path / "vs")
    loaded = EmbeddedStore.load(tmp_path / "vs", nprobe=store.nprobe)
    assert loaded.count() == 500 and loaded.ivf is not None and loaded.ivf.nlist == 10
    assert sorted(loaded.uids) == uids
    q = data[123]
    assert loaded.search(q, k=5) == store.search(q, k=5)
    assert loaded.search(q, k=1)[0].uid == "0000000123"
    # Adding rows drops the index (new rows are in no list); saving then removes the stale ivf.npz.
    loaded.add(["x"], ["t"], ["c"], data[:1])
    assert loaded.ivf is None
    loaded.save(tmp_path / "vs")
    assert not (tmp_path / "vs" / "ivf.npz").exists()


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
