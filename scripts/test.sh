#!/usr/bin/env bash
# The test suite: installs what it needs (venv from requirements.lock, offline model assets),
# then runs lint and every test that needs no GPU, integration tests (real servers on 127.0.0.1) included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -m "not gpu" "$@"
