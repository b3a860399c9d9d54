#!/usr/bin/env bash
# Security scan: checkov over what would reach a cluster or a registry:
#   - the rendered Helm chart, with default values and with each serving/chart/ci/*-values.yaml
#     (test hooks included),
#   - the rendered manifests: manifests/ and each KFP overlay manifests/kfp/*/ (their Secret env
#     files replaced by the committed *.env.example placeholders),
#   - images/*/Dockerfile (as they are in the work tree).
# Skips live in .checkov.yaml, each with its reason; anything else failing fails this script.
#
#   scripts/checkov.sh [OUT_DIR]     # OUT_DIR keeps the renders and checkov-<framework>.json; printed last
#
# checkov (pinned in pyproject.toml, extra `scan`) gets its own venv ($PRODTUNE_CACHE/checkov-venv): its pinned dependencies
# (boto3, pydantic, networkx, ...) cannot share the project's lock. Exit status 3: checkov could not
# be installed (no package index); 1: failed checks; 0: clean.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PRODTUNE_CACHE:-$HOME/.cache/prodtune}
VENV=$CACHE/checkov-venv
# The pin lives in pyproject.toml (extra `scan`).
CHECKOV_VERSION=$(sed -n 's/.*"checkov==\([0-9.]*\)".*/\1/p' "$ROOT/pyproject.toml")
OUT=${1:-$(mktemp -d)}
log() { printf '[checkov] %s\n' "$*" >&2; }

if [ "$("$VENV/bin/checkov" --version 2>/dev/null || true)" != "$CHECKOV_VERSION" ]; then
  log "installing checkov==$CHECKOV_VERSION into $VENV (one time, about 2 minutes)"
  python3 -m venv "$VENV"
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2; then
    log "cannot install checkov (no package index?)"
    exit 3
  fi
fi

TOOLS=$(bash "$ROOT/scripts/k8s-tools.sh")
mkdir -p "$OUT/k8s" "$OUT/docker"
CHART=$ROOT/serving/chart
"$TOOLS/helm" template rel "$CHART" --namespace prodtune > "$OUT/k8s/chart-default.yaml"
for values in "$CHART"/ci/*-values.yaml; do
  "$TOOLS/helm" template rel "$CHART" --namespace prodtune -f "$values" > "$OUT/k8s/chart-$(basename "$values" .yaml).yaml"
done

# Overlays read gitignored Secret env files: render a copy with the placeholder examples.
cp -r "$ROOT/manifests" "$OUT/manifests"
for example in "$OUT"/manifests/kfp/*/secrets/*.env.example; do
  cp "$example" "${example%.example}"
done
"$TOOLS/kubectl" kustomize "$OUT/manifests" > "$OUT/k8s/manifests.yaml"
for overlay in "$OUT"/manifests/kfp/*/; do
  [ -f "$overlay/kustomization.yaml" ] || continue
  name=$(basename "$overlay")
  [ "$name" = base ] && continue
  "$TOOLS/kubectl" kustomize "$overlay" > "$OUT/k8s/kfp-$name.yaml"
done

for dockerfile in "$ROOT"/images/*/Dockerfile; do
  name=$(basename "$(dirname "$dockerfile")")
  mkdir -p "$OUT/docker/$name"
  cp "$dockerfile" "$OUT/docker/$name/Dockerfile"
done

log "scanning $(ls "$OUT"/k8s | wc -l) renders and $(ls "$OUT"/docker | wc -l) Dockerfiles"
cd "$ROOT"
# One run per framework (checkov prints one JSON document per framework); --skip-download: no
# Prisma Cloud calls (offline, and nothing leaves the machine).
status=0
for framework in kubernetes dockerfile; do
  dir=$OUT/k8s
  [ "$framework" = dockerfile ] && dir=$OUT/docker
  "$VENV/bin/checkov" --config-file "$ROOT/.checkov.yaml" -d "$dir" --framework "$framework" \
    --skip-download -o json > "$OUT/checkov-$framework.json" || status=1
  "$VENV/bin/python" - "$OUT/checkov-$framework.json" <<'PY' >&2
import json, sys
rep = json.load(open(sys.argv[1]))
for r in rep if isinstance(rep, list) else [rep]:
    s = r["summary"]
    print(f"[checkov] {r['check_type']}: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped, {s['parsing_errors']} parsing errors")
    for f in r["results"]["failed_checks"]:
        print(f"[checkov]   FAILED {f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}")
PY
done
echo "$OUT"
exit $status
