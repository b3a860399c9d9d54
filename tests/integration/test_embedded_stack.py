"""The embedded stack for real: SeaweedFS + MLflow processes on free ports in a temp dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.embedded.procs import free_port, pid_alive, session_members
from pipelines.embedded.seaweed import GRPC_OFFSET, s3_client
from pipelines.embedded.stack import EmbeddedStack, ServiceError

pytestmark = pytest.mark.integration

# Runs in a subprocess whose environment holds MLFLOW_TRACKING_URI and nothing S3-related.
MLFLOW_CLIENT = """
import os, sys
import mlflow
leaked = sorted(k for k in os.environ if k.startswith(("AWS_", "MLFLOW_S3", "PRODTUNE_S3")))
assert not leaked, leaked
assert not os.path.exists(os.path.expanduser("~/.aws")), "client must not find AWS config"
mlflow.set_experiment("proxy-check")
with mlflow.start_run() as run:
    mlflow.log_param("alpha", "0.5")
    mlflow.log_artifact(sys.argv[1], artifact_path="reports")
print("RUN_ID=" + run.info.run_id)
print("ARTIFACT_URI=" + run.info.artifact_uri)
"""


def test_start_makes_both_services_healthy(embedded_stack: EmbeddedStack) -> None:
    status = embedded_stack.status()
    for name in ("seaweedfs", "mlflow"):
        service = status["services"][name]
        assert service["running"] and service["healthy"], (name, service)
        assert Path(embedded_stack.home / "run" / f"{name}.pid").read_text().strip() == str(service["pid"])


def test_second_start_is_a_no_op(embedded_stack: EmbeddedStack) -> None:
    before = embedded_stack.pids()
    started = embedded_stack.start()
    assert started == {"seaweedfs": False, "mlflow": False}
    assert embedded_stack.pids() == before
    # Same home, other port while running: refused, nothing restarted.
    other = EmbeddedStack.load(embedded_stack.home, mlflow_port=embedded_stack.mlflow_port + 1)
    with pytest.raises(ServiceError, match="mlflow_port"):
        other.start()
    assert embedded_stack.pids() == before


def test_s3_enforces_credentials(embedded_stack: EmbeddedStack) -> None:
    from botocore.exceptions import ClientError
    from pydantic import SecretStr

    from pipelines.embedded.seaweed import S3Credentials

    wrong = S3Credentials(SecretStr("nobody"), SecretStr("wrong-secret"))
    with pytest.raises(ClientError):
        s3_client(embedded_stack.s3_endpoint_url, wrong).list_buckets()
    names = [
        b["Name"]
        for b in s3_client(embedded_stack.s3_endpoint_url, embedded_stack.credentials).list_buckets()[
            "Buckets"
        ]
    ]
    assert embedded_stack.bucket in names


@pytest.mark.parametrize("service", ["seaweedfs s3", "mlflow"])
def test_taken_port_is_named_before_anything_starts(tmp_path: Path, service: str) -> None:
    # A port whose gRPC partner (port+10000) is free, so only the squatted port conflicts.
    port = free_port(with_offset=GRPC_OFFSET)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        key = "s3_port" if service == "seaweedfs s3" else "mlflow_port"
        stack = EmbeddedStack.with_free_ports(tmp_path / "home", **{key: port})
        with pytest.raises(ServiceError, match=rf"{port} \({service}\)"):
            stack.start()
    assert stack.pids() == {"seaweedfs": None, "mlflow": None}
    assert not list((tmp_path / "home" / "run").glob("*.pid"))
    assert not (tmp_path / "home" / "logs").exists()


def test_mlflow_client_needs_only_tracking_uri(embedded_stack: EmbeddedStack, tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    report = tmp_path / "note.txt"
    report.write_text("proxied through the tracking server\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),  # no ~/.aws to fall back on
        "MLFLOW_TRACKING_URI": embedded_stack.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    proc = subprocess.run(
        [sys.executable, "-c", MLFLOW_CLIENT, str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    run_id = out["RUN_ID"]
    assert out["ARTIFACT_URI"].startswith("mlflow-artifacts:"), out["ARTIFACT_URI"]

    client = MlflowClient(tracking_uri=embedded_stack.tracking_uri)
    assert client.get_run(run_id).data.params == {"alpha": "0.5"}
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="reports/note.txt",
        dst_path=str(tmp_path / "back"),
        tracking_uri=embedded_stack.tracking_uri,
    )
    assert Path(local).read_text() == report.read_text()

    # The bytes really live in the SeaweedFS bucket, under the server's artifacts destination.
    s3 = s3_client(embedded_stack.s3_endpoint_url, embedded_stack.credentials)
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=embedded_stack.bucket, Prefix="mlflow/"
        )
        for obj in page.get("Contents", [])
    ]
    matches = [k for k in keys if k.endswith(f"{run_id}/artifacts/reports/note.txt")]
    assert len(matches) == 1, keys
    body = s3.get_object(Bucket=embedded_stack.bucket, Key=matches[0])["Body"].read()
    assert body.decode() == report.read_text()


def test_stop_leaves_no_processes_and_restart_keeps_data(embedded_stack: EmbeddedStack) -> None:
    """Runs last in this module; restarts the session stack so later modules still have it."""
    s3 = s3_client(embedded_stack.s3_endpoint_url, embedded_stack.credentials)
    s3.put_object(Bucket=embedded_stack.bucket, Key="restart/marker.txt", Body=b"still here")
    pids = embedded_stack.pids()
    assert all(pids.values())

    assert embedded_stack.stop() == {"mlflow": True, "seaweedfs": True}
    for name, pid in pids.items():
        assert pid is not None
        assert not pid_alive(pid), name
        assert session_members(pid) == [], f"{name} left children behind"
        assert not (embedded_stack.home / "run" / f"{name}.pid").exists()
    assert embedded_stack.stop() == {"mlflow": False, "seaweedfs": False}

    assert embedded_stack.start() == {"seaweedfs": True, "mlflow": True}
    s3 = s3_client(embedded_stack.s3_endpoint_url, embedded_stack.credentials)
    assert (
        s3.get_object(Bucket=embedded_stack.bucket, Key="restart/marker.txt")["Body"].read() == b"still here"
    )
