#!/usr/bin/env bash
# The whole prodtune demo on embedded defaults: installs what it needs, then runs `prodtune demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/prodtune demo "$@"
