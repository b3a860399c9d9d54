"""Pre-quantized bitsandbytes 4-bit checkpoints (the form `unsloth/*-bnb-4bit` ships in), on CPU.

llama.cpp's converter cannot read bnb tensors, and loading them through transformers needs
bitsandbytes (and, for most of its versions, CUDA). `dequantize_checkpoint` turns such a directory
into a plain 16-bit one with nothing but torch and safetensors, streaming one shard at a time, so a
CPU export pod can convert "the base" for the eval gate and a merge can start from 16-bit weights.

The serialized layout (transformers' bnb 4-bit `save_pretrained`, bitsandbytes `QuantState.as_dict
(packed=True)`), per quantized `<name>.weight`:

- `<name>.weight`: uint8, two 4-bit codes per byte, first element in the high nibble;
- `<name>.weight.quant_map`: float32[16] code book (NF4 or FP4);
- `<name>.weight.absmax`: one scale per `blocksize` elements; with double quantization it is
  itself uint8 codes into `nested_quant_map` (float32[256]) scaled per `nested_blocksize` by
  `nested_absmax`, plus `nested_offset`;
- `<name>.weight.quant_state.bitsandbytes__nf4` (or `__fp4`): uint8 bytes of a JSON object with
  `shape`, `dtype`, `blocksize`, `quant_type` and the nested_* scalars.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from components.common.atomic import atomic_dir
from components.common.errors import InputError

_STATE = ".quant_state.bitsandbytes__"
_SUFFIXES = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map")


def quantization_config(model_dir: str | Path) -> dict[str, Any] | None:
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    return cfg.get("quantization_config")


def is_bnb_4bit(model_dir: str | Path) -> bool:
    """True for a checkpoint saved in bitsandbytes 4-bit (`quantization_config.load_in_4bit`)."""
    q = quantization_config(model_dir) or {}
    return q.get("quant_method") == "bitsandbytes" and bool(q.get("load_in_4bit") or q.get("_load_in_4bit"))


def _blockwise(codes: Any, code_book: Any, absmax: Any, blocksize: int) -> Any:
    import torch

    values = code_book[codes.long()]
    n = values.numel()
    scale = absmax.float().repeat_interleave(blocksize)[:n]
    return (values.float() * scale).to(torch.float32)


def dequantize_tensor(tensors: dict[str, Any], name: str, dtype: Any = None) -> Any:
    """The 16/32-bit weight for bnb-quantized `name` (`<module>.weight`) from its stored parts."""
    import torch

    state_key = next((k for k in tensors if k.startswith(name + _STATE)), None)
    if state_key is None:
        raise InputError(f"{name}: no bitsandbytes quant_state tensor", field=name)
    state = json.loads(bytes(tensors[state_key].to(torch.uint8).tolist()).decode("utf-8"))
    packed = tensors[name].to(torch.uint8).flatten()
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).flatten()
    shape = [int(s) for s in state["shape"]]
    numel = math.prod(shape)
    codes = codes[:numel]
    absmax = tensors[name + ".absmax"]
    if name + ".nested_absmax" in tensors:  # double quantization: the scales are quantized too
        absmax = _blockwise(
            absmax.to(torch.uint8),
            tensors[name + ".nested_quant_map"].float(),
            tensors[name + ".nested_absmax"],
            int(state["nested_blocksize"]),
        ) + float(state.get("nested_offset", 0.0))
    weight = _blockwise(codes, tensors[name + ".quant_map"].float(), absmax, int(state["blocksize"]))
    target = dtype or getattr(torch, str(state.get("dtype", "bfloat16")).replace("torch.", ""))
    return weight.reshape(shape).to(target)


def dequantize_state_dict(tensors: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """Every bnb-quantized weight replaced by its dequantized tensor; other tensors cast to `dtype`."""
    quantized = {k.split(_STATE)[0] for k in tensors if _STATE in k}
    out: dict[str, Any] = {}
    for key, value in tensors.items():
        if _STATE in key or any(key.endswith(s) and key[: -len(s)] in quantized for s in _SUFFIXES):
            continue
        if key in quantized:
            out[key] = dequantize_tensor(tensors, key, dtype)
        elif value.is_floating_point():
            out[key] = value.to(dtype)
        else:
            out[key] = value
        out[key] = out[key].contiguous()
    return out


def dequantize_checkpoint(src: str | Path, dst: str | Path, dtype: str = "bfloat16") -> Path:
    """Write `dst` as a plain `dtype` checkpoint of bnb-4bit `src` (config, tokenizer, weights).

    Idempotent (a finished `dst` is reused) and atomic; peak memory is one shard dequantized.
    """
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if (dst / ".dequantized").is_file():
        return dst
    if not is_bnb_4bit(src):
        raise InputError("not a bitsandbytes 4-bit checkpoint (config.json quantization_config)", path=src)
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise InputError("bnb-4bit checkpoint without *.safetensors", path=src)
    target = getattr(torch, dtype)
    weight_map: dict[str, str] = {}
    with atomic_dir(dst) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and f.name != "model.safetensors.index.json":
                shutil.copy2(f, tmp / f.name)
        for shard in shards:
            with safe_open(str(shard), framework="pt") as fh:
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no iterator)
            plain = dequantize_state_dict(tensors, target)
            del tensors
            save_file(plain, str(tmp / shard.name), metadata={"format": "pt"})
            weight_map.update({k: shard.name for k in plain})
            del plain
        if len(shards) > 1:
            (tmp / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2), encoding="utf-8"
            )
        cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
        cfg.pop("quantization_config", None)
        cfg["torch_dtype"] = cfg["dtype"] = dtype
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        (tmp / ".dequantized").write_text(f"{src}\n{dtype}\n", encoding="utf-8")
    return dst
