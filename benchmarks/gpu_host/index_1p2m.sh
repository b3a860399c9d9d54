#!/usr/bin/env bash
# Issue 12's GPU indexing goal measured directly (1.2M products in < 10 min on one GPU), and real
# MiniLM vectors at 1.2M for the ANN comparison. Two `device` calls on one warm machine:
#   STAGE=index  the catalogue from SEEDS generated files cleaned by prep in parallel (one process per
#                seed: one big file repeats itself, see bench_indexing.catalogue_seeds), embedded by
#                MiniLM in float16 on CUDA as `prodtune index` embeds it; the vectors are kept in
#                /tmp/prodtune-vec1p2m (a warm machine keeps /tmp for the next call).
#   STAGE=ann    hnswlib and faiss on those vectors (16 build threads, one query thread), exact
#                ground truth in the same run; LIBS picks the libraries.
# Carry: index: .devcarry/idx16 (MiniLM in float16: the float32 copy is over the carry limit),
# .devcarry/pyd; ann: .devcarry/ann. All fetched by benchmarks/gpu_host/fetch_carry.sh.
# Local smoke: PY=.venv/bin/python DEVICE=cpu ROWS=2000 SEEDS=2 STAGE=index OUT=/tmp/o benchmarks/gpu_host/index_1p2m.sh
set -uo pipefail
PY=${PY:-python3} DEVICE=${DEVICE:-cuda} ROWS=${ROWS:-1200000} SEEDS=${SEEDS:-12} STAGE=${STAGE:-index}
END=$(( $(date +%s) + ${BUDGET_S:-570} ))
left() { echo $(( END - $(date +%s) )); }
export PYTHONUNBUFFERED=1
VEC=/tmp/prodtune-vec1p2m  # /tmp survives between calls on a warm machine; the checkout's ignored dirs do not
if [ "$DEVICE" = cuda ]; then
  wheels=(.devcarry/pyd/*.whl); [ "$STAGE" = index ] && wheels+=(.devcarry/idx16/*.whl) || wheels+=(.devcarry/ann/*.whl)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "${wheels[@]}" || exit 1
  export PYTHONPATH=/tmp/site:$PWD/.devcarry/idx16/pkg:$PWD
  { lscpu; nvidia-smi; } > "$OUT/host.txt" 2>&1
else
  export PYTHONPATH=$PWD
fi
if [ "$STAGE" = index ]; then
  cp benchmarks/indexing/results.json "$OUT/indexing.json"
  echo "[index] $ROWS products from $SEEDS seeds on $DEVICE (budget $(left) s)"
  timeout $(( $(left) - 10 )) $PY benchmarks/indexing/bench_indexing.py --device "$DEVICE" --engines torch \
    --rows "$ROWS" --seeds "$SEEDS" --threads "$(nproc)" --batch 512 --save-main "$VEC" \
    --work /tmp/prodtune-idx --out "$OUT/indexing.json" >>"$OUT/run.log" 2>&1 || echo "indexing: exit $?"
  tail -c 1200 "$OUT/indexing.json"; ls -la "$VEC"
else
  [ "$DEVICE" = cuda ] && ( $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
    --target /tmp/site-h .devcarry/ann/hnswlib-0.8.0.tar.gz >"$OUT/hnswlib-build.log" 2>&1 || echo "hnswlib: build failed" )
  export PYTHONPATH=$PYTHONPATH:/tmp/site-h
  cp benchmarks/retrieval/results.json "$OUT/retrieval.json"
  v=$(ls "$VEC"/minilm-*[0-9].npy | head -1) || { echo "no vectors in $VEC (machine not warm?)"; exit 3; }
  LIBS=(${LIBS:-hnswlib faiss})
  for i in "${!LIBS[@]}"; do
    b=$(( ($(left) - 10) / (${#LIBS[@]} - i) ))
    echo "[${LIBS[$i]}] on $v (bound $b s)"
    skip=(); [ "$i" -gt 0 ] && skip=(--skip-exact)  # the exact row once, from the first library's run
    $PY benchmarks/retrieval/bench_retrieval.py --vectors "$v" --queries-file "${v%.npy}-queries.npy" \
      --libraries "${LIBS[$i]}" --build-threads "$(nproc)" --ef ${EF:-32 64 128 256} --max-rss-gib 60 \
      --max-seconds "$b" "${skip[@]}" --out "$OUT/retrieval.json" 2>>"$OUT/run.log" | cut -c1-600
  done
fi
echo "done, $(left) s left"
