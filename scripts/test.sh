#!/usr/bin/env bash
# The test suite: installs what it needs (venv from requirements.lock, offline model assets),
# then runs lint and every test that needs no GPU, integration tests (real servers on 127.0.0.1) included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The UI browser test drives Debian's headless Chromium; install it when we can (root + apt).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[test] installing chromium for the browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "[test] chromium unavailable: the browser test will skip" >&2
fi
# The pipeline-in-containers test (tests/integration/test_pipeline_docker.py) runs on the images:
# install and start Docker when we can (root + apt) and build what is missing. Cached by content hash,
# so a second run on the same machine only checks (seconds). train-gpu is not built here: no test
# here runs it (no GPU) and its CUDA wheels are several GB; `scripts/images.sh train-gpu` builds it.
if [ "$(id -u)" = 0 ] || docker info >/dev/null 2>&1; then
  t0=$(date +%s)
  if scripts/images.sh base serve mlflow; then
    echo "[test] images ready in $(($(date +%s) - t0)) s" >&2
  else
    echo "[test] image build failed: the Docker pipeline test will fail" >&2
  fi
else
  echo "[test] WARNING: no Docker and not root: the DockerRunner pipeline test will SKIP" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# The tests start hundreds of Python processes (CLI calls, kfp.local tasks, servers): let them write
# the bytecode they compile, once (setup compiles only the project; see pipelines/cli.py).
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/python -m pytest -m "not gpu" --durations=15 "$@"
