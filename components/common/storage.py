"""S3 object storage for large files (datasets, GGUF models), with end-to-end sha256 checks.

Any S3 works: the embedded SeaweedFS or a real bucket; only `Settings` differ. Uploads use
boto3's managed transfer, which switches to multipart above `multipart_threshold` (a 7B f16 GGUF
is over the 5 GB single-PUT limit). Every uploaded object carries its sha256 as user metadata
(`x-amz-meta-sha256`), and downloads are checked against it before they get their final name.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from components.common.atomic import atomic_path
from components.common.errors import InputError
from components.common.settings import Settings, get_settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SHA256_META = "sha256"
_HASH_BLOCK = 4 * MiB


class StorageError(RuntimeError):
    """An S3 operation failed in a way the caller should see (missing object, bad config)."""


class ChecksumMismatchError(StorageError):
    """Downloaded bytes do not match the sha256 recorded at upload time."""


@dataclass(frozen=True)
class StoredObject:
    uri: str
    sha256: str
    size: int


def sha256_file(path: str | Path, progress: Callable[[int], None] | None = None) -> str:
    """sha256 of a file, streamed in 4 MiB blocks (constant memory for 15 GB models)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise InputError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"S3 URI without a bucket: {uri!r}")
    return bucket, key


@dataclass
class S3Store:
    """One bucket on one S3 endpoint. Keys may also be given as full `s3://bucket/key` URIs."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 64 * MiB
    max_concurrency: int = 4
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> S3Store:
        """Endpoint, bucket and keys from the environment (`PRODTUNE_S3_*`, `AWS_*`).

        Without keys boto3's own chain applies (instance profile, IRSA on EKS); without an
        endpoint, AWS S3's endpoint for the region.
        """
        settings = settings or get_settings()
        kwargs: dict[str, Any] = {
            "bucket": settings.s3_bucket,
            "endpoint_url": settings.s3_endpoint_url,
            "region": settings.s3_region,
            "access_key_id": settings.aws_access_key_id,
            "secret_access_key": settings.aws_secret_access_key,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # --- plumbing -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # "" (an empty ConfigMap value) is AWS's default endpoint, as None is: boto3 itself
            # would reject "" as an invalid endpoint URL.
            endpoint = self.endpoint_url or None
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name=self.region,
                aws_access_key_id=_reveal(self.access_key_id),
                aws_secret_access_key=_reveal(self.secret_access_key),
                config=Config(
                    # Path style: S3-compatible servers (SeaweedFS, MinIO) rarely have wildcard DNS.
                    s3={"addressing_style": "path"} if endpoint else {},
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=120,
                ),
            )
        return self._client

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
            use_threads=True,
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    def locate(self, uri_or_key: str) -> tuple[str, str]:
        """(bucket, key) of a full URI, or of a bare key in this store's bucket."""
        if uri_or_key.startswith("s3://"):
            return split_uri(uri_or_key)
        return self.bucket, uri_or_key.lstrip("/")

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) not in (403, 404):
                raise
            # 403 on head may mean "exists, not ours": create_bucket then says so clearly.
            self.client.create_bucket(Bucket=self.bucket)

    # --- transfers ------------------------------------------------------------------------

    def upload_file(
        self, path: str | Path, key: str, *, progress: Callable[[int], None] | None = None
    ) -> StoredObject:
        """Upload with its sha256 as metadata; multipart above the threshold.

        The hash is streamed over the file first because S3 takes user metadata only when an
        upload starts (adding it afterwards would mean a server-side copy of the whole object).
        """
        path = Path(path)
        if not path.is_file():
            raise InputError("file to upload does not exist", path=path)
        digest = sha256_file(path)
        size = path.stat().st_size
        bucket, key = self.locate(key)
        self.client.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={"Metadata": {SHA256_META: digest}},
            Config=self.transfer_config(),
            Callback=progress,
        )
        head = self.client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] != size:
            raise StorageError(f"s3://{bucket}/{key}: stored {head['ContentLength']} bytes, sent {size}")
        log.info("uploaded %s -> s3://%s/%s (%d bytes, sha256 %s)", path, bucket, key, size, digest)
        return StoredObject(uri=f"s3://{bucket}/{key}", sha256=digest, size=size)

    def stat(self, uri_or_key: str) -> StoredObject:
        """Size and recorded sha256 ('' when the object has none) without downloading."""
        from botocore.exceptions import ClientError

        bucket, key = self.locate(uri_or_key)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                raise StorageError(f"no such object: s3://{bucket}/{key}") from exc
            raise
        return StoredObject(
            uri=f"s3://{bucket}/{key}",
            sha256=head.get("Metadata", {}).get(SHA256_META, ""),
            size=head["ContentLength"],
        )

    def download_file(
        self,
        uri_or_key: str,
        dest: str | Path,
        *,
        verify: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Download to `dest`; with `verify`, a sha256 mismatch raises and leaves no `dest`.

        Objects uploaded by other tools carry no sha256; they are downloaded with a warning.
        """
        obj = self.stat(uri_or_key)
        bucket, key = split_uri(obj.uri)
        dest = Path(dest)
        with atomic_path(dest) as tmp:
            self.client.download_file(bucket, key, str(tmp), Config=self.transfer_config(), Callback=progress)
            if verify:
                if not obj.sha256:
                    log.warning("%s has no sha256 metadata: downloaded unverified", obj.uri)
                else:
                    actual = sha256_file(tmp)
                    if actual != obj.sha256:
                        raise ChecksumMismatchError(
                            f"{obj.uri}: sha256 of the downloaded bytes is {actual}, "
                            f"but the object was uploaded with sha256 {obj.sha256}; {dest} not written"
                        )
        return dest

    def verify(self, uri_or_key: str) -> bool:
        """True if the stored bytes still hash to the recorded sha256 (streams, writes nothing).

        False when they differ or when the object has no recorded sha256.
        """
        obj = self.stat(uri_or_key)
        if not obj.sha256:
            return False
        bucket, key = split_uri(obj.uri)
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for block in body.iter_chunks(chunk_size=_HASH_BLOCK):
            digest.update(block)
        return digest.hexdigest() == obj.sha256

    def fetch_to_local(self, uri: str | Path, dest_dir: str | Path) -> Path:
        """A local path for a step's input: `s3://...` is downloaded (verified), a path is used as is.

        An S3 prefix (`s3://bucket/models/x/`) is downloaded as a directory tree.
        """
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if not text.startswith("s3://"):
            local = Path(text)
            if not local.exists():
                raise InputError("input does not exist", path=local)
            return local
        bucket, key = split_uri(text)
        dest_dir = Path(dest_dir)
        if key and not key.endswith("/") and self._exists(bucket, key):
            return self.download_file(text, dest_dir / Path(key).name)
        return self._fetch_prefix(bucket, key, dest_dir)

    def _fetch_prefix(self, bucket: str, prefix: str, dest_dir: Path) -> Path:
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        root = dest_dir / Path(prefix.rstrip("/")).name if prefix else dest_dir
        keys = [
            obj["Key"]
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        ]
        if not keys:
            raise StorageError(f"nothing at s3://{bucket}/{prefix}")
        for key in keys:
            rel = Path(key[len(prefix) :])
            if ".." in rel.parts or rel.is_absolute():
                raise StorageError(f"refusing key that escapes the destination: {key!r}")
            self.download_file(f"s3://{bucket}/{key}", root / rel)
        return root

    def _exists(self, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise
        return True


def _reveal(secret: SecretStr | None) -> str | None:
    # Empty keys mean "no keys": boto3 then uses its chain (IRSA) instead of signing with "".
    value = secret.get_secret_value() if secret is not None else None
    return value or None


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def main(argv: list[str] | None = None) -> int:
    """`python -m components.common.storage fetch URI DEST_DIR`: download (sha256-verified) for
    containers that need an S3 object as a local file, e.g. the chart's catalogue-indexing Job.
    Prints the local path; bad input or a failed download is one line on stderr, exit 2."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m components.common.storage")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download an s3:// object or prefix into DEST_DIR")
    fetch.add_argument("uri")
    fetch.add_argument("dest_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        local = S3Store.from_settings().fetch_to_local(args.uri, args.dest_dir)
    except (InputError, StorageError) as exc:
        print(f"storage: error: {exc}", file=sys.stderr)
        return 2
    print(local)
    return 0


__all__ = [
    "ChecksumMismatchError",
    "S3Store",
    "StorageError",
    "StoredObject",
    "sha256_file",
    "split_uri",
]


if __name__ == "__main__":
    raise SystemExit(main())
