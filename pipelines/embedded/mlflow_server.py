"""MLflow tracking server for the embedded stack: SQLite backend, artifacts proxied to S3.

Only this process holds the S3 endpoint and keys (`MLFLOW_S3_ENDPOINT_URL`, `AWS_*`); clients
talk to `/api/2.0/mlflow-artifacts/...` and need nothing but `MLFLOW_TRACKING_URI`.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from pipelines.embedded.seaweed import S3Credentials

# Variables a parent shell may carry that would point the server at some other store or cloud.
_SCRUBBED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def mlflow_command(
    *, host: str, port: int, backend_uri: str, artifacts_destination: str, workers: int = 1
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination,
        # One uvicorn worker keeps the server near 300 MB; a laptop pipeline is one client.
        "--workers",
        str(workers),
    ]


def mlflow_env(base: Mapping[str, str], *, s3_endpoint: str, creds: S3Credentials) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in _SCRUBBED}
    env.update(
        {
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            "AWS_ACCESS_KEY_ID": creds.access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key.get_secret_value(),
            "AWS_DEFAULT_REGION": "us-east-1",
            # Nothing in the server may phone home: the machine may be offline.
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
            # The server's job runner (GenAI judges, trace rollups) forks ~7 huey consumers,
            # over 1 GB together; the pipeline uses none of it.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    return env


def sqlite_uri(db_path: Path) -> str:
    return f"sqlite:///{db_path.resolve()}"


def mlflow_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False
