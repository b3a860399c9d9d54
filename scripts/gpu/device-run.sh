#!/usr/bin/env bash
# The GPU host's side of the fine-tune benchmark (docs/gpu.md), two calls; from the repo root:
#   bash scripts/gpu/device-run.sh 1   # carry: .carry/gpu-wheels .carry/tok-qwen2.5 .carry/tok-llama3.2 .carry/bench-data
#   bash scripts/gpu/device-run.sh 2   # same carry; a fresh machine re-installs the wheels (~30 s)
# Call 1: the throughput / memory cases of both shapes. Call 2: pytest -m gpu, both families as bnb-4bit
# checkpoints through run_finetune (issue 10), then cases call 1 did not reach and the extra ones.
# Call 3 (if needed): the families and pytest part of call 2 again.
# Results go to $OUT (at most 8 files come back): results-N.json, log-N.txt, pytest-gpu.txt, <family>-gpu.tgz*.
set -uo pipefail
phase=${1:?phase 1 or 2}
OUT=${OUT:-/tmp/prodtune-gpu-out}; mkdir -p "$OUT"
log="$OUT/log-$phase.txt"
source scripts/gpu/bootstrap.sh 2>&1 | tee -a "$log"
source scripts/gpu/bootstrap.sh > /dev/null 2>&1  # again, for the exports (a pipe runs it in a subshell)
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee -a "$log"
export PRODTUNE_GPU_WORK=$PRODTUNE_GPU_HOME/work
run=(python3 -m benchmarks.finetune_gpu.run all --out "$OUT" --data .carry/bench-data --work "$PRODTUNE_GPU_WORK"
     --tokenizer qwen2.5=.carry/tok-qwen2.5 --tokenizer llama3.2=.carry/tok-llama3.2
     --results-name "results-$phase.json" --log-name "log-$phase.txt" --skip-done)
shape_cases() { local s=$1; shift; local IFS=,; echo "${*/%/-$s}"; }
families_and_tests() {
  for fam in qwen2.5 llama3.2; do
    timeout 110 python3 -m benchmarks.finetune_gpu.family_bnb gpu --family "$fam" --tokenizer ".carry/tok-$fam" \
      --data .carry/bench-data --out "$OUT" --work "$PRODTUNE_GPU_WORK" --steps 20 >> "$log" 2>&1 \
      && echo "family $fam: ok" || echo "family $fam: FAILED (see log-$phase.txt)"
  done
  timeout 150 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | grep -v "examples/s" > "$OUT/pytest-gpu.txt"
  tail -40 "$OUT/pytest-gpu.txt"
}
if [ "$phase" = 3 ]; then  # the retry of call 2's second half
  families_and_tests
elif [ "$phase" = 1 ]; then
  "${run[@]}" --budget-s "${BUDGET1:-540}" --cases "$(shape_cases qwen2.5-7b unsloth-packed hf-padded \
    unsloth-padded unsloth-packedfp16),$(shape_cases llama-3.2-3b unsloth-packed hf-padded unsloth-padded \
    unsloth-packedfp16)"
else
  # the 3B ratios first (call 1 ran out of time there), then issue 10's families, then pytest -m gpu
  "${run[@]}" --budget-s "${BUDGET2:-230}" --cases "$(shape_cases llama-3.2-3b hf-padded unsloth-padded)"
  families_and_tests
  "${run[@]}" --budget-s "${BUDGET3:-95}" --results-name results-2b.json --cases "${CASES2:-unsloth-packedfp16-llama-3.2-3b}"
fi
