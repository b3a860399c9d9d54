#!/usr/bin/env bash
# Prepare, on a networked machine, what the offline GPU host needs, under .carry/ (git-ignored, ~45 MiB):
#   .carry/gpu-wheels/  Unsloth + bitsandbytes + TRL + datasets (../shared/gpu/fetch-wheels.sh, ~21 MiB) and
#                       the small pure-python wheels our code imports that the host image lacks
#                       (pydantic-settings, python-dotenv, gguf); diffusers and hf_transfer are dropped
#                       (10 MB; Unsloth never imports them for training: only an env var names them)
#   .carry/tok-qwen2.5/, .carry/tok-llama3.2/
#                       the families' real tokenizers (published BPE ranks from PyPI quicktok-v1, built by
#                       tests/fixtures/family_models.py: FAMILY_FIXTURE names the file if it is not in the tree)
#   .carry/bench-data/  the training rows with the real length mix (benchmarks/finetune_gpu/make_data.py)
# Usage: scripts/gpu/pack.sh   (then see docs/gpu.md for the device calls)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd); c="$root/.carry"
fetch=${FETCH_WHEELS:-$root/../shared/gpu/fetch-wheels.sh}
fixture=${FAMILY_FIXTURE:-$root/tests/fixtures/family_models.py}
py=${PYTHON:-python3}
mkdir -p "$c"

[ -f "$c/gpu-wheels/trimmed.tgz" ] || bash "$fetch" "$c/gpu-wheels"
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d "$c/gpu-wheels" \
  pydantic-settings==2.16.3 python-dotenv==1.2.4 gguf==0.19.0
rm -f "$c"/gpu-wheels/diffusers-*.whl "$c"/gpu-wheels/hf_transfer-*.whl

# Tokenizers: written by transformers 5.24 as "TokenizersBackend"; the host's 5.17 reads the generic name.
for fam in qwen2.5 llama3.2; do
  rm -rf "$c/tok-$fam"
  $py - "$fixture" "$fam" "$c/tok-$fam" <<'PY'
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("family_models", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules["family_models"] = mod; spec.loader.exec_module(mod)
out = Path(mod.build_tokenizer(sys.argv[2], sys.argv[3]) or sys.argv[3])
cfg_path = out / "tokenizer_config.json"
cfg = json.loads(cfg_path.read_text())
cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
cfg_path.write_text(json.dumps(cfg, indent=1))
print(out, sorted(p.name for p in out.iterdir()))
PY
done

$py -m benchmarks.finetune_gpu.make_data --out "$c/bench-data" \
  --tokenizer "qwen2.5=$c/tok-qwen2.5" --tokenizer "llama3.2=$c/tok-llama3.2"
du -sh "$c"/*; du -csh "$c" | tail -1
