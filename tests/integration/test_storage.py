"""components.common.storage against the embedded SeaweedFS (a real S3 server)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from components.common.errors import InputError
from components.common.settings import Settings
from components.common.storage import ChecksumMismatchError, MiB, S3Store, StorageError

pytestmark = pytest.mark.integration


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def test_multipart_upload_download_roundtrip(stack_env: dict[str, str], tmp_path: Path) -> None:
    # S3's smallest legal part is 5 MiB: 11 MiB in 5 MiB parts forces a 3-part upload.
    store = S3Store.from_settings(Settings(), multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    store.ensure_bucket()
    src = _random_file(tmp_path / "model.gguf", 11 * MiB)
    seen: list[int] = []

    stored = store.upload_file(src, "models/test/model.gguf", progress=seen.append)

    expected = hashlib.sha256(src.read_bytes()).hexdigest()
    assert stored.uri == f"s3://{stack_env['PRODTUNE_S3_BUCKET']}/models/test/model.gguf"
    assert (stored.sha256, stored.size) == (expected, 11 * MiB)
    assert sum(seen) == 11 * MiB
    head = store.client.head_object(Bucket=store.bucket, Key="models/test/model.gguf")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # multipart ETags end in -<parts>
    assert head["Metadata"]["sha256"] == expected

    dest = store.download_file(stored.uri, tmp_path / "out" / "model.gguf")
    assert dest.read_bytes() == src.read_bytes()
    assert store.verify(stored.uri)
    assert store.verify("models/test/model.gguf")  # bare keys resolve in the store's bucket


def test_corrupted_object_is_detected(s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.ensure_bucket()
    src = _random_file(tmp_path / "data.bin", 64 * 1024)
    stored = s3_store.upload_file(src, "corrupt/data.bin")
    # Bit rot at rest: same key and recorded checksum, different bytes.
    damaged = bytearray(src.read_bytes())
    damaged[100] ^= 0xFF
    s3_store.client.put_object(
        Bucket=s3_store.bucket,
        Key="corrupt/data.bin",
        Body=bytes(damaged),
        Metadata={"sha256": stored.sha256},
    )

    dest = tmp_path / "out" / "data.bin"
    with pytest.raises(ChecksumMismatchError, match=stored.sha256):
        s3_store.download_file(stored.uri, dest)
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir()]  # no temp file left either
    assert s3_store.verify(stored.uri) is False
    # The caller can still get the bytes on purpose.
    assert s3_store.download_file(stored.uri, dest, verify=False).read_bytes() == bytes(damaged)


def test_fetch_to_local_accepts_uri_prefix_or_path(s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.ensure_bucket()
    a = _random_file(tmp_path / "a.bin", 1000)
    s3_store.upload_file(a, "fetch/model/a.bin")
    s3_store.upload_file(a, "fetch/model/sub/b.bin")

    got = s3_store.fetch_to_local(s3_store.uri("fetch/model/a.bin"), tmp_path / "dl")
    assert got == tmp_path / "dl" / "a.bin" and got.read_bytes() == a.read_bytes()

    tree = s3_store.fetch_to_local(s3_store.uri("fetch/model/"), tmp_path / "tree")
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()) == [
        "a.bin",
        "sub/b.bin",
    ]

    assert s3_store.fetch_to_local(a, tmp_path / "unused") == a
    assert not (tmp_path / "unused").exists()
    with pytest.raises(InputError):
        s3_store.fetch_to_local(tmp_path / "missing.csv", tmp_path / "unused")
    with pytest.raises(StorageError, match="nothing at"):
        s3_store.fetch_to_local(s3_store.uri("fetch/nope/"), tmp_path / "unused")


def test_missing_object_is_a_clear_error(s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.ensure_bucket()
    with pytest.raises(StorageError, match="no such object"):
        s3_store.download_file("never/uploaded.bin", tmp_path / "x")
