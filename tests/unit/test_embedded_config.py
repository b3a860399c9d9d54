"""Embedded stack configuration: credentials, env(), ports, secrets hygiene. No servers start."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from components.common.settings import Settings
from components.common.storage import S3Store
from pipelines.embedded.mlflow_server import mlflow_command, mlflow_env
from pipelines.embedded.procs import ServiceError, check_ports_free, free_port, port_in_use
from pipelines.embedded.seaweed import (
    GRPC_OFFSET,
    S3Credentials,
    SeaweedPorts,
    load_or_create_credentials,
    seaweed_command,
)
from pipelines.embedded.stack import SECRET_ENV_VARS, EmbeddedStack


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_private_and_stable(tmp_path: Path) -> None:
    cred_dir = tmp_path / "credentials"
    first = load_or_create_credentials(cred_dir)
    assert _mode(cred_dir) == 0o700
    assert _mode(cred_dir / "s3.json") == 0o600
    assert _mode(cred_dir / "seaweedfs-ids.json") == 0o600

    second = load_or_create_credentials(cred_dir)
    assert second.secret_access_key.get_secret_value() == first.secret_access_key.get_secret_value()
    assert len(first.secret_access_key.get_secret_value()) >= 40

    ids = json.loads((cred_dir / "seaweedfs-ids.json").read_text())
    key = ids["identities"][0]["credentials"][0]
    assert key["accessKey"] == first.access_key_id.get_secret_value()
    assert key["secretKey"] == first.secret_access_key.get_secret_value()


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    cred_dir = tmp_path / "credentials"
    load_or_create_credentials(cred_dir)
    os.chmod(cred_dir / "s3.json", 0o644)
    load_or_create_credentials(cred_dir)
    assert _mode(cred_dir / "s3.json") == 0o600


def test_each_home_gets_its_own_keys(tmp_path: Path) -> None:
    a = load_or_create_credentials(tmp_path / "a")
    b = load_or_create_credentials(tmp_path / "b")
    assert a.secret_access_key.get_secret_value() != b.secret_access_key.get_secret_value()


def test_env_names_what_settings_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = EmbeddedStack(tmp_path, s3_port=18333, mlflow_port=15050, bucket="bkt")
    env = stack.env()
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15050"
    assert env["PRODTUNE_S3_ENDPOINT_URL"] == "http://127.0.0.1:18333"
    assert env["PRODTUNE_S3_BUCKET"] == "bkt"
    creds = json.loads((tmp_path / "credentials" / "s3.json").read_text())
    assert env["AWS_ACCESS_KEY_ID"] == creds["access_key_id"]
    assert env["AWS_SECRET_ACCESS_KEY"] == creds["secret_access_key"]
    assert env.keys() >= SECRET_ENV_VARS

    # Round trip: the env a client receives configures Settings (and so S3Store) completely.
    for name in ("AWS_ENDPOINT_URL", "PRODTUNE_S3_ACCESS_KEY_ID", "PRODTUNE_S3_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
    assert settings.s3_endpoint_url == env["PRODTUNE_S3_ENDPOINT_URL"]
    assert settings.s3_bucket == "bkt"
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == env["AWS_SECRET_ACCESS_KEY"]
    # env() is pure configuration: it starts nothing.
    assert stack.pids() == {"seaweedfs": None, "mlflow": None}


def test_secrets_stay_out_of_reprs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = EmbeddedStack(tmp_path)
    secret = stack.env()["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    settings = Settings()
    store = S3Store.from_settings(settings)
    creds = S3Credentials(SecretStr("AKIDEXAMPLE"), SecretStr(secret))
    for obj in (stack, settings, store, creds):
        assert secret not in repr(obj)
        assert secret not in str(obj)
    assert secret not in str(stack.status())


def test_port_in_use_and_conflict_message() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert port_in_use(taken)
        free = free_port()
        assert not port_in_use(free)
        check_ports_free({"mlflow": free})
        with pytest.raises(ServiceError, match=rf"{taken} \(seaweedfs master\)"):
            check_ports_free({"mlflow": free, "seaweedfs master": taken})


def test_free_port_with_offset_leaves_room_for_grpc() -> None:
    port = free_port(with_offset=GRPC_OFFSET)
    assert port + GRPC_OFFSET < 65536
    assert not port_in_use(port + GRPC_OFFSET)


def test_start_refuses_taken_grpc_port_before_spawning(tmp_path: Path) -> None:
    # weed binds port+10000 for gRPC; a conflict there must be caught up front, not by a crash.
    master = free_port(with_offset=GRPC_OFFSET)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", master + GRPC_OFFSET))
        sock.listen()
        stack = EmbeddedStack.with_free_ports(tmp_path, master_port=master)
        with pytest.raises(ServiceError, match=rf"{master + GRPC_OFFSET} \(seaweedfs master gRPC\)"):
            stack.start()
    assert stack.pids() == {"seaweedfs": None, "mlflow": None}
    assert not (tmp_path / "logs").exists()


def test_with_free_ports_picks_distinct_ports(tmp_path: Path) -> None:
    stack = EmbeddedStack.with_free_ports(tmp_path)
    ports = [*stack.seaweed_ports.named().values(), stack.mlflow_port]
    assert len(set(ports)) == len(ports) == 9


def test_load_reuses_saved_ports(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stack.json").write_text(json.dumps({"s3_port": 20333, "mlflow_port": 20050}))
    stack = EmbeddedStack.load(tmp_path)
    assert (stack.seaweed_ports.s3, stack.mlflow_port) == (20333, 20050)
    assert EmbeddedStack.load(tmp_path, mlflow_port=21050, s3_port=None).mlflow_port == 21050


def test_seaweed_command_pins_every_port(tmp_path: Path) -> None:
    ports = SeaweedPorts(s3=1111, master=2222, volume=3333, filer=4444)
    cmd = seaweed_command(Path("/bin/weed"), tmp_path, tmp_path / "ids.json", ports, "127.0.0.1")
    for flag, port in [("s3", 1111), ("master", 2222), ("volume", 3333), ("filer", 4444)]:
        assert f"-{flag}.port={port}" in cmd
        assert f"-{flag}.port.grpc={port + GRPC_OFFSET}" in cmd
    assert "-ip.bind=127.0.0.1" in cmd
    assert f"-s3.config={tmp_path / 'ids.json'}" in cmd
    assert "-master.telemetry=false" in cmd


def test_mlflow_server_alone_holds_s3_settings() -> None:
    creds = S3Credentials(SecretStr("ak"), SecretStr("sk"))
    parent = {"PATH": "/usr/bin", "AWS_PROFILE": "prod", "MLFLOW_TRACKING_URI": "http://elsewhere"}
    env = mlflow_env(parent, s3_endpoint="http://127.0.0.1:1", creds=creds)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("ak", "sk")
    assert "AWS_PROFILE" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["PATH"] == "/usr/bin"
    cmd = mlflow_command(
        host="127.0.0.1", port=5, backend_uri="sqlite:///x.db", artifacts_destination="s3://b/m"
    )
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://b/m"
    assert "--serve-artifacts" in cmd and cmd[cmd.index("--workers") + 1] == "1"


def test_status_of_a_stopped_stack_starts_nothing(tmp_path: Path) -> None:
    info = EmbeddedStack(tmp_path, s3_port=18333, mlflow_port=15050).status()
    for service in info["services"].values():
        assert (service["running"], service["healthy"], service["pid"]) == (False, False, None)
    assert info["services"]["mlflow"]["url"] == "http://127.0.0.1:15050"
    assert not (tmp_path / "credentials").exists()


def test_ports_whose_grpc_partner_overflows_are_refused(tmp_path: Path) -> None:
    stack = EmbeddedStack.with_free_ports(tmp_path, s3_port=60000)
    with pytest.raises(ServiceError, match=r"70000 \(seaweedfs s3 gRPC\)"):
        stack.start()
    assert not (tmp_path / "logs").exists()
