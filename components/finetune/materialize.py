"""Turn a GGUF base model into a plain Hugging Face safetensors directory, once.

transformers can read a GGUF (weights dequantized), but such a model refuses `save_pretrained` and
TRL's trainer ("quantized with gguf"). Materializing it once gives every step one ordinary base
directory (config, safetensors, tokenizer with its chat template), so nothing else special-cases GGUF.

Idempotent: a directory that already holds a complete model is left alone.
Run as `python -m components.finetune.materialize` (defaults below) or `prodtune assets materialize`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from components.common.atomic import atomic_dir
from components.common.errors import InputError

MODELS_DIR = Path(os.environ.get("PRODTUNE_MODELS_DIR", Path.home() / ".cache" / "prodtune" / "models"))
DEFAULT_GGUF = MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUTPUT = MODELS_DIR / "smollm2-135m-instruct"
# float16 keeps the dequantized Q4_1 values (fp16 scale * 4-bit int + fp16 min) closer than bfloat16
# would, at half the size of float32; export converts to f16 GGUF anyway.
DEFAULT_DTYPE = "float16"
MARKER = ".materialized"


def is_materialized(output: Path) -> bool:
    return (output / MARKER).is_file() and (output / "config.json").is_file()


def materialize(
    gguf: str | Path = DEFAULT_GGUF, output: str | Path = DEFAULT_OUTPUT, dtype: str = DEFAULT_DTYPE
) -> Path:
    """Write `output` as a plain HF model dir from `gguf`; return it. Skips if already done."""
    gguf, output = Path(gguf).expanduser(), Path(output).expanduser()
    if is_materialized(output):
        return output
    if not gguf.is_file():
        raise InputError("GGUF model file not found (run scripts/setup.sh to fetch it)", path=gguf)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF quantizer marks the model as quantized; the weights are already dequantized tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model = model.to(getattr(torch, dtype))
    # Some transformers versions (5.17) read SmolLM2's GGUF eos as <|im_start|>; the model config
    # (from the GGUF's own eos id) is right, so make the tokenizer agree with it.
    eos = model.config.eos_token_id
    eos_id = eos if isinstance(eos, int) else (eos[0] if eos else None)
    if eos_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)

    # Write beside the target, then rename: a crash never leaves a half model under the final name.
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(f"source={gguf.name}\ndtype={dtype}\n", encoding="utf-8")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default=str(DEFAULT_GGUF), help="GGUF file (default: %(default)s)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="HF model dir (default: %(default)s)")
    parser.add_argument("--dtype", default=DEFAULT_DTYPE, choices=["float16", "bfloat16", "float32"])
    args = parser.parse_args(argv)
    try:
        out = materialize(args.gguf, args.output, args.dtype)
    except InputError as exc:
        print(f"materialize: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
