"""benchmarks/retrieval/vector_parts.py: int8 parts that come back as the same unit vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.retrieval.vector_parts import pack, unpack


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pack_unpack_keeps_rows_order_and_direction(tmp_path: Path) -> None:
    src, parts, dst = tmp_path / "src", tmp_path / "parts", tmp_path / "dst"
    src.mkdir()
    docs, queries = _unit(1001, 0), _unit(7, 1)
    np.save(src / "vectors.npy", docs)
    np.save(src / "queries.npy", queries)
    pack(src, parts, parts=3)
    assert sorted(p.name for p in parts.iterdir()) == [
        "queries.npy",
        "vectors-0.npy",
        "vectors-1.npy",
        "vectors-2.npy",
    ]
    assert np.load(parts / "vectors-0.npy").dtype == np.int8
    assert sum(np.load(p).nbytes for p in parts.glob("vectors-*.npy")) == docs.size  # one byte a value
    unpack(parts, dst)
    back = np.load(dst / "vectors.npy")
    assert back.shape == docs.shape and back.dtype == np.float32
    cos = np.sum(back * docs, axis=1)
    assert cos.min() > 0.9999  # per-row scaling: the rounding barely moves a vector
    assert np.allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    assert np.argmax(back @ docs[500]) == 500  # rows stay in order across parts
    assert np.allclose(np.load(dst / "queries.npy"), queries, atol=1e-6)


def test_unpack_without_parts_fails_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=str(tmp_path)):
        unpack(tmp_path, tmp_path / "out")
