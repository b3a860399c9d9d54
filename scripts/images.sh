#!/usr/bin/env bash
# Build the container images with Debian's docker.io (20.10, BuildKit built in; no registry, no buildx):
#   scripts/images.sh [--refs FILE] [--docker-only] [base serve mlflow train-gpu]   (default: all four)
# - installs docker.io and mmdebstrap with apt when absent and starts dockerd when it is not running;
# - makes the base, Debian bookworm + python3, with mmdebstrap + `docker import` (nothing is pulled);
# - stages the local wheels pip cannot get from the index (this machine's CPU torch from pip's
#   find-links dir, the llama-cpp-python wheel and sdist that scripts/setup.sh caches) in images/.context/;
# - pip reaches the index during a build only through the CA bundle, passed as build secret `ca`;
# - tags <registry>/prodtune-<name>:<version> and :<version>-<content hash>; an image whose hash tag
#   exists is not rebuilt (idempotent: a second run takes seconds), older hash tags are removed;
# - prints the images and their sizes; --refs FILE also writes "name=reference" lines.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${PRODTUNE_CACHE:-$HOME/.cache/prodtune}
CA=${PRODTUNE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates,libgomp1 # libgomp1: llama.cpp's OpenMP runtime
# Debian's client: a newer docker CLI elsewhere on PATH insists on the buildx plugin for BuildKit.
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker || echo docker)}
CONTEXT=images/.context
refs_file="" docker_only=0 names=()

log() { printf '\033[1m[images]\033[0m %s\n' "$*" >&2; }
die() {
  printf '[images] error: %s\n' "$*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
  --refs) refs_file=$2 && shift ;;
  --docker-only) docker_only=1 ;;
  base | serve | mlflow | train-gpu) names+=("$1") ;;
  *) die "unknown argument $1 (images: base serve mlflow train-gpu)" ;;
  esac
  shift
done
[ ${#names[@]} -gt 0 ] || names=(base serve mlflow train-gpu)

ensure_docker() {
  local missing=()
  [ -x /usr/bin/docker ] || command -v dockerd >/dev/null || missing+=(docker.io)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "need ${missing[*]} (apt-get as root)"
    log "installing ${missing[*]} with apt"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
      die "apt-get install ${missing[*]} failed"
    DOCKER=/usr/bin/docker
  fi
  if ! "$DOCKER" info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "no Docker daemon reachable and not root: start dockerd or join the docker group"
    mkdir -p "$CACHE"
    log "starting dockerd (log: $CACHE/dockerd.log)"
    # No bridge or iptables (not available here); builds and containers use the host network.
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >"$CACHE/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
      "$DOCKER" info >/dev/null 2>&1 && return 0
      sleep 1
    done
    die "dockerd did not come up in 60 s; see $CACHE/dockerd.log"
  fi
}

# hash_of PATH...: one sha256 over the files' contents and names (caches and junk left out)
hash_of() {
  find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -name '*.gguf' ! -path '*/.pytest_cache/*' \
    -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12
}

ensure_base() {
  local hash ref
  hash=$(printf '%s %s\n' "$SUITE" "$BASE_PACKAGES" | sha256sum | cut -c1-12)
  BASE_TAG=12-$hash
  ref=prodtune/bookworm-py:$BASE_TAG
  if ! "$DOCKER" image inspect "$ref" >/dev/null 2>&1; then
    log "making the base $ref with mmdebstrap ($SUITE: $BASE_PACKAGES; ~3 min)"
    nice -n 10 mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" "$SUITE" - |
      "$DOCKER" import --change 'CMD ["python3"]' - "$ref" >/dev/null
  fi
  "$DOCKER" tag "$ref" prodtune/bookworm-py:12
}

# The local wheels of the runtime lock (CPU torch, llama-cpp-python) and the sdist, hard-linked when
# possible (same filesystem), else copied; files no longer needed are removed.
stage_context() {
  local torch_v llama_v find_links dir torch_whl="" llama_whl sdist
  torch_v=$(sed -n -E 's/^torch==//p' requirements.lock)
  llama_v=$(sed -n -E 's/^llama[-_]cpp[-_]python==//p' requirements.lock)
  find_links=$(python3 -m pip config list 2>/dev/null | sed -n -E "s/^[^=]*find-links='(.*)'$/\1/p")
  for dir in $find_links "$CACHE/wheels"; do
    for f in "$dir"/torch-"$torch_v"-cp311-*.whl; do [ -f "$f" ] && torch_whl=$f; done
  done
  [ -n "$torch_whl" ] || die "no torch-$torch_v wheel in pip's find-links ($find_links) or $CACHE/wheels"
  llama_whl=$(ls "$CACHE"/wheels/llama_cpp_python-"$llama_v"-*.whl 2>/dev/null | head -1)
  sdist=$CACHE/sdist/llama_cpp_python-$llama_v.tar.gz
  [ -n "$llama_whl" ] && [ -f "$sdist" ] || die "no llama-cpp-python $llama_v wheel/sdist in $CACHE: run scripts/setup.sh"
  mkdir -p "$CONTEXT/wheels" "$CONTEXT/sdist"
  find "$CONTEXT/wheels" "$CONTEXT/sdist" -type f ! -name "$(basename "$torch_whl")" \
    ! -name "$(basename "$llama_whl")" ! -name "$(basename "$sdist")" -delete
  for f in "$torch_whl" "$llama_whl" "$sdist"; do
    dest=$CONTEXT/$([ "$f" = "$sdist" ] && echo sdist || echo wheels)/$(basename "$f")
    cmp -s "$f" "$dest" 2>/dev/null || ln -f "$f" "$dest" 2>/dev/null || cp "$f" "$dest"
  done
}

# What each image's build reads from the context (its content hash covers exactly these).
SOURCE=(pyproject.toml README.md components pipelines serving)
inputs() {
  case $1 in
  base) echo images/base requirements.lock "$CONTEXT" "${SOURCE[@]}" ;;
  serve) echo images/serve requirements.lock "$CONTEXT/wheels" "${SOURCE[@]}" ;;
  mlflow) echo images/mlflow requirements.lock ;;
  train-gpu) echo images/train-gpu "${SOURCE[@]}" ;;
  esac
}

build() {
  local name=$1 hash repo ref start old
  # shellcheck disable=SC2046
  hash=$( (echo "$BASE_TAG" && hash_of $(inputs "$name")) | sha256sum | cut -c1-12)
  repo=$REGISTRY/prodtune-$name
  ref=$repo:$VERSION-$hash
  if "$DOCKER" image inspect "$ref" >/dev/null 2>&1; then
    log "$name: up to date ($ref)"
  else
    [ "$name" != train-gpu ] || log "train-gpu: CUDA torch and its nvidia-* wheels are several GB ($(df -h --output=avail / | tail -1) free)"
    log "$name: building $ref"
    start=$(date +%s)
    DOCKER_BUILDKIT=1 nice -n 10 "$DOCKER" build --network host --progress plain \
      --secret id=ca,src="$CA" --build-arg BASE_TAG="$BASE_TAG" \
      --label org.prodtune.content-hash="$hash" \
      -f "images/$name/Dockerfile" -t "$ref" -t "$repo:$VERSION" . >"$CACHE/images-$name.log" 2>&1 ||
      {
        tail -40 "$CACHE/images-$name.log" >&2
        die "$name: build failed (full log: $CACHE/images-$name.log)"
      }
    log "$name: built in $(($(date +%s) - start)) s"
    for old in $("$DOCKER" image ls "$repo" --format '{{.Repository}}:{{.Tag}}' | grep -E ":$VERSION-[0-9a-f]{12}$" | grep -vx "$ref"); do
      "$DOCKER" rmi "$old" >/dev/null 2>&1 || true
    done
  fi
  "$DOCKER" tag "$ref" "$repo:$VERSION"
  built+=("$name=$ref")
}

ensure_docker
[ "$docker_only" = 0 ] || exit 0
# Names and version: the references the compiled pipeline uses (one owner: components/common/images.py).
read -r REGISTRY VERSION < <(PYTHONPATH=. python3 -c \
  'from components.common.images import REGISTRY, VERSION; print(REGISTRY, VERSION)')
mkdir -p "$CACHE"
ensure_base
case " ${names[*]} " in *" base "* | *" serve "*) stage_context ;; esac
built=()
for name in "${names[@]}"; do build "$name"; done

printf '%-12s %-60s %s\n' IMAGE REFERENCE SIZE
for row in "${built[@]}"; do
  ref=${row#*=}
  size=$("$DOCKER" image inspect --format '{{.Size}}' "$ref")
  printf '%-12s %-60s %s\n' "${row%%=*}" "$ref" "$(numfmt --to=si --round=nearest --format=%.2f --suffix=B "$size")"
done
if [ -n "$refs_file" ]; then printf '%s\n' "${built[@]}" >"$refs_file"; fi
