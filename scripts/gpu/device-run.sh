#!/usr/bin/env bash
# The GPU host's side of the benchmark, in two calls (scripts/gpu/pack.sh says why two); from the repo root:
#   bash scripts/gpu/device-run.sh 1   # carry: .carry/gpu-wheels .carry/smol-tok .carry/smol-a
#   bash scripts/gpu/device-run.sh 2   # carry: .carry/smol-b   (same warm machine, right after call 1)
# Results go to $OUT (results-N.json, log-N.txt, the SmolLM2 adapter, pytest output).
set -uo pipefail
phase=${1:?phase 1 or 2}
OUT=${OUT:-/tmp/prodtune-gpu-out}; mkdir -p "$OUT"
source scripts/gpu/bootstrap.sh > "$OUT/bootstrap-$phase.txt" 2>&1; cat "$OUT/bootstrap-$phase.txt"
export PRODTUNE_GPU_WORK=$PRODTUNE_GPU_HOME/work PRODTUNE_GPU_TOKENIZER=$PRODTUNE_GPU_HOME/smol-tok
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/bootstrap-$phase.txt"
run=(python3 -m benchmarks.finetune_gpu.run all --out "$OUT" --tokenizer "$PRODTUNE_GPU_TOKENIZER"
     --results-name "results-$phase.json" --log-name "log-$phase.txt" --skip-done)
if [ "$phase" = 1 ]; then
  # 7B pair first: the ratio that matters most is complete early if the budget runs out.
  "${run[@]}" --cases unsloth-qwen2.5-7b,hf-qwen2.5-7b,unsloth-llama-3.2-3b,hf-llama-3.2-3b --budget-s 500
else
  "${run[@]}" --cases unsloth-smollm2,hf-smollm2 --steps 40 --rows 320 --eval-examples 8 --adapter-to \
    --budget-s 260
  timeout 240 python3 -m pytest -m gpu tests/gpu -x -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest-gpu.txt"
  # shaped cases that did not finish in call 1, if time is left
  "${run[@]}" --cases unsloth-qwen2.5-7b,hf-qwen2.5-7b,unsloth-llama-3.2-3b,hf-llama-3.2-3b --budget-s 120 \
    --results-name results-2b.json
fi
