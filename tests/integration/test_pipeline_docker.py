"""The whole pipeline in its containers: `kfp.local.DockerRunner` on the images scripts/images.sh builds.

Same run and checks as test_pipeline_local.py (pipeline_checks.py), but every step runs in the
prodtune-base image (the CPU recipes: on CPU the fine-tune runs there too; prodtune-train-gpu is for
GPU nodes) as UID 10001 with a read-only root filesystem and only /tmp writable (tmpfs), on the host
network: how a Pod Security `restricted` pod runs it. SeaweedFS and MLflow are the embedded stack's,
MLflow on a real PostgreSQL started here from the server binaries (initdb/pg_ctl on 127.0.0.1). The
input reaches the steps through S3 only; the base model through a read-only mount at /models.

Docker is required: scripts/test.sh installs docker.io and starts dockerd when it can (root), and
the images are built (or found by content hash) by scripts/images.sh in the fixture. Without root
and without a reachable daemon the test skips, and says so loudly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from components.common.storage import S3Store
from pipelines.embedded.mlflow_server import mlflow_healthy
from pipelines.embedded.procs import free_port
from pipelines.embedded.stack import EmbeddedStack
from tests.integration.pipeline_checks import INPUT_LINES, SMALL, check_pipeline_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = shutil.which("/usr/bin/docker") or shutil.which("docker") or "docker"
MODELS = Path(os.environ.get("PRODTUNE_MODELS_DIR", Path.home() / ".cache" / "prodtune" / "models"))
STEP_UID = "10001:10001"


def _docker_usable() -> str | None:
    """None when Docker works or scripts/images.sh can make it work (root); else why not."""
    if subprocess.run([DOCKER, "info"], capture_output=True).returncode == 0:
        return None
    if os.geteuid() == 0 and (shutil.which("dockerd") or shutil.which("apt-get")):
        return None
    return "no Docker daemon is reachable and this user cannot install or start one (not root)"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """name -> reference of the images these tests run (base, mlflow), built when missing."""
    reason = _docker_usable()
    if reason:
        banner = f"\n{'!' * 78}\n!! SKIPPING the DockerRunner pipeline test: {reason}\n{'!' * 78}\n"
        sys.stderr.write(banner)
        pytest.skip(f"DOCKER UNAVAILABLE, pipeline-in-containers NOT tested: {reason}")
    refs = tmp_path_factory.mktemp("images") / "refs.txt"
    # Builds the image when its content hash is new; seconds when it exists already.
    subprocess.run(
        [str(ROOT / "scripts" / "images.sh"), "--refs", str(refs), "base", "mlflow"], check=True, cwd=ROOT
    )
    return dict(line.split("=", 1) for line in refs.read_text().split())


def _as_nobody(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL on 127.0.0.1 in a temp dir; yields its SQLAlchemy URI for MLflow."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not on PATH")
    base = Path(tempfile.mkdtemp(prefix="prodtune-pg-"))  # not under pytest's 0700 dirs: nobody reads it
    data, port, password = base / "data", free_port(), "pg-test-not-a-secret"
    (base / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        shutil.chown(base / "pw", "nobody")
    initdb = ["initdb", "-D", str(data), "-U", "mlflow", "--pwfile", str(base / "pw"), "--auth=scram-sha-256"]
    subprocess.run(_as_nobody(initdb), check=True, capture_output=True)
    opts = f"-h 127.0.0.1 -p {port} -k {base}"
    start = ["pg_ctl", "-D", str(data), "-l", str(base / "postgres.log"), "-o", opts, "-w", "start"]
    subprocess.run(_as_nobody(start), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_nobody(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory, postgres: str) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack.with_free_ports(tmp_path_factory.mktemp("prodtune-pg-home"), backend_uri=postgres)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world-readable copy of the base model for the /models mount: the cached one may be 0600
    (written through a private temp file), which UID 10001 cannot read."""
    src = MODELS / "smollm2-135m-instruct"
    if not (src / "config.json").is_file():
        pytest.fail(f"base model missing at {src}: run scripts/setup.sh")
    dest = tmp_path_factory.mktemp("models")
    shutil.copytree(src, dest / src.name)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def test_whole_pipeline_runs_in_containers_non_root_read_only(
    tmp_path, images, pg_stack, postgres, models_dir
):
    import psycopg2

    from components.prep.sample_data import generate_trn
    from pipelines.local_run import LocalRun
    from tests.fakes.openai_fault_server import FaultServer

    base_image = images["base"]
    env = pg_stack.env()
    trn = tmp_path / "trn.json.gz"
    generate_trn(trn, lines=INPUT_LINES, seed=1)
    # The steps see no host path but the pipeline root: the input goes through S3.
    store = S3Store(
        bucket=env["PRODTUNE_S3_BUCKET"],
        endpoint_url=env["PRODTUNE_S3_ENDPOINT_URL"],
        access_key_id=SecretStr(env["AWS_ACCESS_KEY_ID"]),
        secret_access_key=SecretStr(env["AWS_SECRET_ACCESS_KEY"]),
    )
    input_uri = store.upload_file(trn, "inputs/trn.json.gz").uri
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0o777)  # the steps write their outputs here as UID 10001
    spec_file, out_file, log_file = tmp_path / "spec.json", tmp_path / "run.json", tmp_path / "run.log"
    started = time.monotonic()
    with FaultServer() as teacher:
        step_env = {
            **env,
            "OPENAI_BASE_URL": teacher.url,
            "OPENAI_API_KEY": "sk-test-not-a-secret",
            "HOME": "/tmp/home",  # the root filesystem is read-only: $HOME lives on the tmpfs
            "PRODTUNE_HOME": "/tmp/prodtune",
            "PRODTUNE_MODELS_DIR": "/models",
            # The image's own value, named here too: `${PRODTUNE_CACHE:-...}` in the recipes is
            # expanded where the pipeline is built (this process), not inside the container.
            "PRODTUNE_CACHE": "/opt/prodtune/cache",
        }
        spec = {
            "input_uri": input_uri,
            "root": str(root),
            "env": step_env,
            "image": base_image,
            "models": str(models_dir),
        }
        spec_file.write_text(json.dumps(spec))
        # A fresh interpreter: components take their image names from the environment at import time.
        with log_file.open("w") as log:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.test_pipeline_docker",
                    str(spec_file),
                    str(out_file),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        requested = teacher.uids()
    elapsed = time.monotonic() - started
    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-60:])
    assert proc.returncode == 0, f"pipeline in containers failed after {elapsed:.0f} s:\n{tail}"
    print(f"\n[docker pipeline] {elapsed:.0f} s in containers ({base_image})")

    out = json.loads(out_file.read_text())
    result = LocalRun(
        out["run_id"], Path(out["pipeline_root"]), {k: Path(v) for k, v in out["outputs"].items()}
    )
    # The steps ran as 10001, not as root: their outputs are owned by that UID.
    assert all(p.stat().st_uid == 10001 for p in result.outputs.values())
    check_pipeline_run(result, env, requested, tmp_path)
    # MLflow's runs and registry live in PostgreSQL, not in a SQLite file.
    with (
        psycopg2.connect(postgres.replace("postgresql+psycopg2", "postgresql")) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT count(*) FROM registered_models WHERE name LIKE 'prodtune-%%'")
        assert cur.fetchone()[0] == 2
    assert not list(pg_stack.home.rglob("*.db"))


def test_mlflow_image_serves_on_postgres_non_root_read_only(images, postgres):
    """The tracking server image (manifests/mlflow) on a PostgreSQL backend, as the cluster runs it."""
    import psycopg2
    from mlflow.tracking import MlflowClient

    dsn = postgres.replace("postgresql+psycopg2", "postgresql")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True  # CREATE DATABASE runs outside a transaction
    with conn.cursor() as cur:  # its own database: the pipeline test's server uses `postgres`
        cur.execute("DROP DATABASE IF EXISTS mlflow_image")
        cur.execute("CREATE DATABASE mlflow_image")
    conn.close()
    backend, port = postgres.rsplit("/", 1)[0] + "/mlflow_image", free_port()
    cmd = [DOCKER, "run", "-d", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    cmd += ["--user", STEP_UID, "-e", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false", images["mlflow"]]
    cmd += ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", backend, "--artifacts-destination", "/tmp/artifacts"]
    container = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not mlflow_healthy(uri):
            running = subprocess.run([DOCKER, "inspect", container], capture_output=True).returncode == 0
            assert running and time.monotonic() < deadline, "the MLflow image did not come up"
            time.sleep(2)
        client = MlflowClient(uri)
        client.create_experiment("image-check")
        client.create_registered_model("image-check-model")
        with psycopg2.connect(backend.replace("postgresql+psycopg2", "postgresql")) as db, db.cursor() as cur:
            cur.execute("SELECT name FROM experiments WHERE name = 'image-check'")
            assert cur.fetchone() == ("image-check",)
            cur.execute("SELECT count(*) FROM registered_models WHERE name = 'image-check-model'")
            assert cur.fetchone() == (1,)
    finally:
        subprocess.run([DOCKER, "stop", "-t", "5", container], capture_output=True)


def _run_in_containers(spec: dict, out_file: Path) -> None:
    """The child: every step in `spec["image"]`, as a restricted pod would run it."""
    os.environ["PRODTUNE_BASE_IMAGE"] = os.environ["PRODTUNE_TRAIN_GPU_IMAGE"] = spec["image"]
    from docker.types import Mount

    from pipelines.local_run import run_local

    docker_args = {
        "network_mode": "host",
        "user": STEP_UID,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,size=4g,mode=1777"},
        "mounts": [Mount("/models", spec["models"], type="bind", read_only=True)],
    }
    result = run_local(
        spec["input_uri"], spec["root"], profile="local", overrides=SMALL, env=spec["env"], docker=docker_args
    )
    outputs = {k: str(v) for k, v in result.outputs.items()}
    out_file.write_text(
        json.dumps({"run_id": result.run_id, "pipeline_root": str(result.pipeline_root), "outputs": outputs})
    )


if __name__ == "__main__":
    _run_in_containers(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
