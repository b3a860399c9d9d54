"""Move a real-embedding set between machines in parts small enough for the GPU host's transfer
limits (16 MiB a file, 64 MiB a call): each vector scaled so its largest component is 127, rounded
to int8 (the scale needs no storing: unpacking re-normalises), split in parts.

    python benchmarks/retrieval/vector_parts.py pack SRC_DIR PARTS_DIR [--parts 3]
    python benchmarks/retrieval/vector_parts.py unpack PARTS_DIR DST_DIR

`pack` reads SRC_DIR/vectors.npy and queries.npy (as bench_indexing --save-vectors writes them);
`unpack` writes DST_DIR/vectors.npy and queries.npy again, re-normalised float32. Both runs of
bench_retrieval on a set (one per machine) must read the *unpacked* copy, so every library is
measured on the same vectors. `pack` prints what the rounding costs (cosine of each vector with its
unpacked copy, mean and min).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def to_int8(x: np.ndarray) -> np.ndarray:
    scale = 127.0 / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12)
    return np.rint(x * scale).astype(np.int8)


def to_unit_f32(q: np.ndarray) -> np.ndarray:
    x = q.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pack(src: Path, dst: Path, parts: int) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    cos = []
    for i, chunk in enumerate(np.array_split(np.load(src / "vectors.npy"), parts)):
        q = to_int8(chunk)
        np.save(dst / f"vectors-{i}.npy", q)
        cos.append(np.sum(to_unit_f32(q) * chunk, axis=1) / np.linalg.norm(chunk, axis=1))
    c = np.concatenate(cos)
    print(f"packed {len(c)} vectors as int8: cosine with the original mean {c.mean():.6f}, min {c.min():.6f}")
    np.save(dst / "queries.npy", np.load(src / "queries.npy").astype(np.float32))


def unpack(src: Path, dst: Path) -> None:
    files = sorted(src.glob("vectors-*.npy"), key=lambda p: int(p.stem.split("-")[1]))
    if not files:
        raise SystemExit(f"{src}: no vectors-N.npy parts")
    dst.mkdir(parents=True, exist_ok=True)
    np.save(dst / "vectors.npy", to_unit_f32(np.concatenate([np.load(f) for f in files])))
    np.save(dst / "queries.npy", to_unit_f32(np.load(src / "queries.npy")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--parts", type=int, default=3)
    args = ap.parse_args()
    if args.action == "pack":
        pack(args.src, args.dst, args.parts)
    else:
        unpack(args.src, args.dst)


if __name__ == "__main__":
    main()
