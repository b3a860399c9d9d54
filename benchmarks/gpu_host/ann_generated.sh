#!/usr/bin/env bash
# Issue 12's ANN row at 1.2M generated vectors, on the GPU host's CPUs (no GPU needed: its 16 cores
# build, one thread queries). Order by importance: exact baseline, faiss (the default), hnswlib,
# usearch; each library gets its own time bound so one slow build cannot starve the rest of the call.
# LIBS="hnswlib usearch" picks and orders them; M and EFC set the graph (default 32, 200).
# Carry: .devcarry/ann (faiss-cpu 1.15.1 wheel, hnswlib 0.8.0 sdist: PyPI has no wheel, built here)
# and .devcarry/us (usearch 2.26.6 + numkong 7.8.6), cp312 wheels. SKIP_EXACT=1 keeps the exact row
# of an earlier run (the first call's, here).
set -uo pipefail
PY=${PY:-python3} BIG=${BIG:-1200000}
END=$(( $(date +%s) + ${BUDGET_S:-560} ))
left() { echo $(( END - $(date +%s) )); }
export PYTHONUNBUFFERED=1
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devcarry/ann/*.whl .devcarry/us/*.whl || exit 1
( $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site-h \
  .devcarry/ann/hnswlib-0.8.0.tar.gz >"$OUT/hnswlib-build.log" 2>&1 || echo "hnswlib: build failed" ) &
export PYTHONPATH=/tmp/site:$PWD
lscpu > "$OUT/host.txt"
cp benchmarks/retrieval/results.json "$OUT/retrieval.json"
R=(benchmarks/retrieval/bench_retrieval.py --sizes "$BIG" --build-threads "$(nproc)" --ef ${EF:-64 128 256 512}
   --m "${M:-32}" --ef-construction "${EFC:-200}"
   --max-rss-gib 60 --out "$OUT/retrieval.json")
bench() {  # library, seconds
  echo "[$1] at $BIG (bound $2 s, $(left) s left)"
  $PY "${R[@]}" --skip-exact --libraries "$1" --max-seconds "$2" 2>>"$OUT/run.log" | cut -c1-600
}
if [ -z "${SKIP_EXACT:-}" ]; then
  echo "[exact] at $BIG"; $PY "${R[@]}" --libraries --max-seconds 120 2>>"$OUT/run.log" | cut -c1-600
fi
# LIBS: the libraries of this call, in order; each gets an equal share of the time left
LIBS=(${LIBS:-faiss hnswlib usearch})
wait
export PYTHONPATH=/tmp/site:/tmp/site-h:$PWD
for i in "${!LIBS[@]}"; do
  bench "${LIBS[$i]}" $(( ($(left) - 10) / (${#LIBS[@]} - i) ))
done
echo "done, $(left) s left"
