"""components.common.storage without a server: URIs, hashing, local inputs, configuration."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import SecretStr

from components.common.errors import InputError
from components.common.settings import Settings
from components.common.storage import MiB, S3Store, sha256_file, split_uri


def test_split_uri() -> None:
    assert split_uri("s3://bkt/a/b.gguf") == ("bkt", "a/b.gguf")
    assert split_uri("s3://bkt") == ("bkt", "")
    with pytest.raises(InputError):
        split_uri("/local/path")
    with pytest.raises(InputError):
        split_uri("s3:///no-bucket")


def test_locate_resolves_bare_keys_in_own_bucket() -> None:
    store = S3Store(bucket="mine")
    assert store.locate("models/x.gguf") == ("mine", "models/x.gguf")
    assert store.locate("/models/x.gguf") == ("mine", "models/x.gguf")
    assert store.locate("s3://other/k") == ("other", "k")
    assert store.uri("k/v") == "s3://mine/k/v"


def test_sha256_file_streams_in_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (9 * 4096 + 7)  # ~9.4 MB: more than two 4 MiB blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    seen: list[int] = []
    assert sha256_file(path, progress=seen.append) == hashlib.sha256(data).hexdigest()
    assert len(seen) == 3 and sum(seen) == len(data)


def test_fetch_to_local_passes_local_paths_through(tmp_path: Path) -> None:
    store = S3Store(bucket="unused")
    src = tmp_path / "trn-processed.csv"
    src.write_text("uid,title\n")
    assert store.fetch_to_local(src, tmp_path / "dl") == src
    assert store.fetch_to_local(f"file://{src}", tmp_path / "dl") == src
    assert not (tmp_path / "dl").exists()
    with pytest.raises(InputError, match="does not exist"):
        store.fetch_to_local(tmp_path / "nope.csv", tmp_path / "dl")


def test_upload_of_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        S3Store(bucket="b").upload_file(tmp_path / "missing.gguf", "k")


def test_from_settings_and_transfer_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODTUNE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PRODTUNE_S3_BUCKET", "models")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    store = S3Store.from_settings(Settings(), multipart_threshold=5 * MiB, multipart_chunksize=6 * MiB)
    assert (store.bucket, store.endpoint_url) == ("models", "http://127.0.0.1:9")
    config = store.transfer_config()
    assert (config.multipart_threshold, config.multipart_chunksize) == (5 * MiB, 6 * MiB)
    assert "s3cr3t-value" not in repr(store)
    assert isinstance(store.secret_access_key, SecretStr)
    # The default threshold keeps 5 GB+ files (7B f16 GGUF) off the single-PUT path.
    assert S3Store(bucket="b").multipart_threshold < 5 * 1024 * MiB
