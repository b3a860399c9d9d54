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
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -m "not gpu" "$@"
