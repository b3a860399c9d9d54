"""Random-weight models of the production architectures, built from their published configs.

No model hub is reachable from the GPU host, so the 7B and 3B runs use models with the exact shapes of
Qwen2.5-7B-Instruct and Llama-3.2-3B-Instruct (layers, hidden size, heads, KV heads, vocab, tied or
untied embeddings, RoPE settings: the values of their published `config.json`) and random weights.
Memory and speed of QLoRA depend on these shapes, not on the weight values; the loss does not mean
anything on them. The tokenizer is the family's real one (built offline from the published BPE ranks by
`tests/fixtures/family_models.py`), so row lengths and chat templates are those of the real models.
`quantize_bnb4` turns a shape into the pre-quantized bnb-4bit checkpoint form that production loads
(`unsloth/Qwen2.5-7B-Instruct-bnb-4bit`: nf4, double quantization, bf16 compute, lm_head unquantized).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

# Published config.json values (Qwen/Qwen2.5-7B-Instruct, meta-llama/Llama-3.2-3B-Instruct).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-7b": {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "sliding_window": 131072,
        "max_window_layers": 28,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    },
    "llama-3.2-3b": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    },
}

# Not a published shape: a 2-layer, 64-wide Llama for the CPU plumbing check (`run.py all --smoke`).
SHAPES["tiny"] = {
    **SHAPES["llama-3.2-3b"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}

# Which production recipe trains which shape, and whose tokenizer it uses.
RECIPES = {"qwen2.5-7b": "describer.yaml", "llama-3.2-3b": "qa.yaml", "tiny": "qa.yaml"}
FAMILY = {"qwen2.5-7b": "qwen2.5", "llama-3.2-3b": "llama3.2", "tiny": "llama3.2"}

# Tokenizer files copied next to the random weights (SmolLM2's; see module docstring).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)


def shape_config(name: str, tokenizer_dir: str | Path, num_layers: int | None = None) -> Any:
    """A transformers config of the named shape; special token ids come from the tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    if name not in SHAPES:
        raise KeyError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    values = dict(SHAPES[name])
    if num_layers is not None:  # CPU smoke tests only: same widths, fewer layers
        values["num_hidden_layers"] = num_layers
        if "max_window_layers" in values:
            values["max_window_layers"] = num_layers
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    bos = tok.convert_tokens_to_ids(tok.bos_token) if tok.bos_token else eos
    model_type = values.pop("model_type")
    cfg = AutoConfig.for_model(model_type, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, **values)
    if cfg.vocab_size < len(tok):
        raise ValueError(f"tokenizer has {len(tok)} tokens, more than the {name} vocabulary")
    return cfg


def param_count(cfg: Any) -> int:
    """Parameters of a dense decoder of this config (embeddings counted once when tied)."""
    h, i, n, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    head_dim = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * head_dim, cfg.num_key_value_heads * head_dim
    attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if cfg.model_type == "qwen2" else 0)  # qwen2: qkv bias
    per_layer = attn + 3 * h * i + 2 * h
    return n * per_layer + h + v * h * (1 if cfg.tie_word_embeddings else 2)


def build_random_model(
    name: str,
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    *,
    num_layers: int | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> Path:
    """Write a bf16 safetensors model dir of shape `name` with random weights + SmolLM2's tokenizer.

    Initialised on `device` (on CUDA a 7B initialises in seconds, on CPU in minutes). Idempotent:
    an existing complete dir (marker file) is reused.
    """
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    marker = out / ".random-shape"
    if marker.is_file() and json.loads(marker.read_text())["num_layers"] == num_layers:
        return out
    cfg = shape_config(name, tokenizer_dir, num_layers)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    del model
    for f in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / f).is_file():
            shutil.copy2(Path(tokenizer_dir) / f, tmp / f)
    (tmp / ".random-shape").write_text(
        json.dumps({"shape": name, "num_layers": num_layers, "params": param_count(cfg)}), encoding="utf-8"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def bnb4_config() -> Any:
    """The quantization of the unsloth/*-bnb-4bit checkpoints (their config.json's quantization_config)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_storage=torch.uint8,
        llm_int8_skip_modules=["lm_head"],
    )


def quantize_bnb4(src: str | Path, out_dir: str | Path) -> Path:
    """Load a bf16 model dir in 4-bit on CUDA and save it pre-quantized (weights + quant states), with
    its tokenizer files and marker; the form `FastLanguageModel.from_pretrained(load_in_4bit=True)` and
    transformers both load without re-quantizing."""
    import torch
    from transformers import AutoModelForCausalLM

    src, out = Path(src), Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(src), quantization_config=bnb4_config(), dtype=torch.bfloat16, device_map={"": 0},
        local_files_only=True,
    )  # fmt: skip
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    for f in (*TOKENIZER_FILES, ".random-shape"):
        if (src / f).is_file():
            shutil.copy2(src / f, tmp / f)
    marker = json.loads((tmp / ".random-shape").read_text())
    (tmp / ".random-shape").write_text(json.dumps({**marker, "bnb_4bit": True}), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
