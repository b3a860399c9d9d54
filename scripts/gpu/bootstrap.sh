#!/usr/bin/env bash
# On the offline GPU host, from the repo root: install the carried wheels.
#   source scripts/gpu/bootstrap.sh
# Idempotent on one machine: what it installs lives under $PRODTUNE_GPU_HOME (default /opt/prodtune-gpu),
# which outlives a call while the machine stays warm; the carried .carry/ paths do not.
# Exports HF_HUB_OFFLINE=1, PRODTUNE_GPU_HOME, and PRODTUNE_GPU_{DATA,TOKENIZER} when carried.
export PRODTUNE_GPU_HOME=${PRODTUNE_GPU_HOME:-/opt/prodtune-gpu}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
unset MLFLOW_TRACKING_URI   # tracking off: components.common.tracking gives a null tracker, mlflow never imported
mkdir -p "$PRODTUNE_GPU_HOME"
_w=.carry/gpu-wheels
if [ -f "$PRODTUNE_GPU_HOME/.installed" ]; then
  echo "bootstrap: wheels already installed on this machine"
elif [ -f "$_w/trimmed.tgz" ]; then
  _sp=$(python3 -c 'import site;print(site.getsitepackages()[0])')
  tar xzf "$_w/trimmed.tgz" -C "$_sp" &&
    python3 -m pip install -q --no-deps --no-index --no-compile "$_w"/*.whl &&
    date -u > "$PRODTUNE_GPU_HOME/.installed" && echo "bootstrap: wheels installed into $_sp"
else
  echo "bootstrap: NO WHEELS (neither carried nor installed earlier on this machine)" >&2
fi
[ -d .carry/bench-data ] && export PRODTUNE_GPU_DATA=$PWD/.carry/bench-data
[ -d .carry/tok-llama3.2 ] && export PRODTUNE_GPU_TOKENIZER=$PWD/.carry/tok-llama3.2
python3 - <<'PY'
import importlib.metadata as md
names = ["torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "unsloth", "unsloth_zoo",
         "datasets", "xformers", "pydantic", "pydantic-settings", "gguf"]
def v(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "-"
print("bootstrap versions:", ", ".join(f"{n} {v(n)}" for n in names))
PY
