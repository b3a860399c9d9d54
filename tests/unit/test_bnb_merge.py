"""bnb-4bit checkpoints on CPU (dequantize) and the merge plan: never merge into a 4-bit model.

The real bitsandbytes (CPU backend) writes the checkpoint when it is installed; the merge itself
runs with a tiny random Llama and a real PEFT adapter. What cannot run here: loading a bnb model
for training (CUDA), and Unsloth; the GPU host test covers those (tests/gpu/).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from components.common.bnb import dequantize_checkpoint, dequantize_tensor, is_bnb_4bit  # noqa: E402
from components.finetune.merge import plan_merge  # noqa: E402


def _tiny_llama(path: Path, dtype: str = "bfloat16") -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).to(getattr(torch, dtype))
    model.save_pretrained(str(path))
    return path


def _config(path: Path, **extra) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(extra)
    (path / "config.json").write_text(json.dumps(cfg))


def test_plan_never_merges_into_4bit(tmp_path: Path) -> None:
    plain = _tiny_llama(tmp_path / "plain")
    bnb = _tiny_llama(tmp_path / "bnb")
    _config(
        bnb,
        quantization_config={
            "quant_method": "bitsandbytes",
            "load_in_4bit": True,
            "bnb_4bit_compute_dtype": "bfloat16",
        },
    )
    assert is_bnb_4bit(bnb) and not is_bnb_4bit(plain)
    assert plan_merge(plain, None, loaded_in_4bit=False).source == "in_memory"
    assert plan_merge(plain, None, loaded_in_4bit=True).source == "reload"  # QLoRA on a 16-bit base
    deq = plan_merge(bnb, None, loaded_in_4bit=True)
    assert (deq.source, deq.dtype) == ("dequantized", "bfloat16")
    orig = plan_merge(bnb, plain, loaded_in_4bit=True)
    assert (orig.source, orig.base_dir, orig.dtype) == ("original", plain, "bfloat16")
    with pytest.raises(ValueError, match="itself a bnb-4bit"):
        plan_merge(bnb, bnb, loaded_in_4bit=True)


def _nf4_code() -> torch.Tensor:
    # bitsandbytes' NF4 code book (functional.get_4bit_type("nf4")), normalised to [-1, 1].
    return torch.tensor(
        [
            -1.0,
            -0.6961928009986877,
            -0.5250730514526367,
            -0.39491748809814453,
            -0.28444138169288635,
            -0.18477343022823334,
            -0.09105003625154495,
            0.0,
            0.07958029955625534,
            0.16093020141124725,
            0.24611230194568634,
            0.33791524171829224,
            0.44070982933044434,
            0.5626170039176941,
            0.7229568362236023,
            1.0,
        ]
    )


def _quantize_like_bnb(w: torch.Tensor, blocksize: int = 64) -> dict[str, torch.Tensor]:
    """An independent NF4 + double-quant encoder in the serialized layout (no nested offset tricks)."""
    flat = w.float().flatten()
    blocks = flat.reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    codes = (
        (blocks / absmax[:, None]).unsqueeze(-1).sub(_nf4_code()).abs().argmin(-1).flatten().to(torch.uint8)
    )
    packed = (codes[0::2] << 4) | codes[1::2]
    offset = absmax.mean()
    centred = absmax - offset
    nested_code = torch.linspace(-1, 1, 256)
    nblocks = centred.reshape(-1, 256) if centred.numel() % 256 == 0 else centred.reshape(1, -1)
    nested_absmax = nblocks.abs().amax(dim=1)
    q_abs = (nblocks / nested_absmax[:, None]).unsqueeze(-1).sub(nested_code).abs().argmin(-1).flatten()
    state = {
        "quant_type": "nf4",
        "blocksize": blocksize,
        "dtype": "bfloat16",
        "shape": list(w.shape),
        "nested_blocksize": nblocks.shape[1],
        "nested_offset": float(offset),
        "nested_dtype": "float32",
    }
    return {
        "w.weight": packed.reshape(-1, 1),
        "w.weight.absmax": q_abs.to(torch.uint8),
        "w.weight.quant_map": _nf4_code(),
        "w.weight.nested_absmax": nested_absmax,
        "w.weight.nested_quant_map": nested_code,
        "w.weight.quant_state.bitsandbytes__nf4": torch.tensor(
            list(json.dumps(state).encode()), dtype=torch.uint8
        ),
    }


def test_dequantize_tensor_recovers_nf4_weights() -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 256) * 0.02
    out = dequantize_tensor(_quantize_like_bnb(w), "w.weight")
    assert out.shape == w.shape and out.dtype == torch.bfloat16
    err = (out.float() - w).abs().max() / w.abs().max()
    assert err < 0.15  # NF4 step size near the block max; a layout bug gives errors ~1
    assert torch.corrcoef(torch.stack([out.float().flatten(), w.flatten()]))[0, 1] > 0.99


def test_dequantize_matches_real_bitsandbytes_on_cpu() -> None:
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(1)
    w = (torch.randn(128, 192) * 0.05).to(torch.bfloat16)
    try:
        packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"bitsandbytes has no CPU 4-bit quantization here: {exc}")
    tensors = {"w.weight": packed, **{f"w.weight.{k}": v for k, v in state.as_dict(packed=True).items()}}
    ours = dequantize_tensor(tensors, "w.weight")
    theirs = bnb_f.dequantize_4bit(packed, state)
    assert torch.equal(ours, theirs.to(ours.dtype))


def test_dequantize_checkpoint_writes_a_plain_16bit_dir(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = _tiny_llama(tmp_path / "plain", "float32")
    sd = load_file(str(src / "model.safetensors"))
    bnb_dir = tmp_path / "bnb"
    bnb_dir.mkdir()
    name = "model.layers.0.mlp.down_proj.weight"
    q = {k.replace("w.weight", name): v for k, v in _quantize_like_bnb(sd[name]).items()}
    save_file({**{k: v for k, v in sd.items() if k != name}, **q}, str(bnb_dir / "model.safetensors"))
    (bnb_dir / "config.json").write_text((src / "config.json").read_text())
    _config(bnb_dir, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    (bnb_dir / "tokenizer.json").write_text("{}")

    out = dequantize_checkpoint(bnb_dir, tmp_path / "deq", dtype="bfloat16")
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "bfloat16"
    assert (out / "tokenizer.json").is_file()
    plain = load_file(str(out / "model.safetensors"))
    assert set(plain) == set(sd)  # no absmax / quant_map / quant_state left
    assert plain[name].shape == sd[name].shape and plain[name].dtype == torch.bfloat16
    assert (plain[name].float() - sd[name]).abs().max() < 0.2 * sd[name].abs().max()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out))  # loads as an ordinary model


def test_merge_onto_16bit_base_equals_w_plus_ba(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from components.finetune.merge import merge_onto

    base_dir = _tiny_llama(tmp_path / "base", "bfloat16")
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(str(tmp_path / "adapter"))
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<eos>": 1}, "a")))
    out = tmp_path / "merged"
    out.mkdir()
    plan = plan_merge(base_dir, None, loaded_in_4bit=True)
    merge_onto(plan, tmp_path / "adapter", out, tok, [1])
    merged = load_file(str(out / "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    lora = peft.base_model.model.model.layers[0].self_attn.q_proj
    delta = (lora.lora_B["default"].weight @ lora.lora_A["default"].weight) * (8 / 4)
    base_w = load_file(str(base_dir / "model.safetensors"))[key].float()
    assert merged[key].dtype == torch.bfloat16
    assert torch.allclose(merged[key].float(), base_w + delta, atol=2e-2)
    assert not torch.allclose(merged[key].float(), base_w, atol=1e-3)  # the adapter is really in


def test_reference_dtype_is_bf16_for_production_sizes(tmp_path: Path) -> None:
    from components.export.precision import parameter_count, reference_dtype

    small = _tiny_llama(tmp_path / "small", "bfloat16")
    assert reference_dtype(small) == "float32" and 0 < parameter_count(small) < 1_000_000
    big = tmp_path / "big"
    big.mkdir()
    (big / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    for i in range(2):  # 2 x 4 GB sparse shards: 4e9 bf16 parameters, no disk used
        with open(big / f"model-0000{i}.safetensors", "wb") as fh:
            fh.truncate(4_000_000_000)
    assert parameter_count(big) == 4_000_000_000 and reference_dtype(big) == "bfloat16"


def test_real_bnb_checkpoint_dequantizes_like_transformers_and_merges(tmp_path: Path) -> None:
    """A bnb-4bit checkpoint written by transformers + bitsandbytes (CPU backend), the form
    `unsloth/*-bnb-4bit` ships in: our torch-only dequantizer equals transformers' own dequantize,
    and the merge plan goes through it (skips without bitsandbytes)."""
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedTokenizerFast

    from components.finetune.merge import merge_onto

    plain = _tiny_llama(tmp_path / "plain", "bfloat16")
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    try:
        m4 = AutoModelForCausalLM.from_pretrained(str(plain), quantization_config=q, device_map={"": "cpu"})
    except (RuntimeError, ImportError, ValueError) as exc:
        pytest.skip(f"bitsandbytes cannot quantize on this CPU: {exc}")
    m4.save_pretrained(str(tmp_path / "bnb"))
    assert is_bnb_4bit(tmp_path / "bnb")
    ours = dequantize_checkpoint(tmp_path / "bnb", tmp_path / "deq")
    theirs = m4.dequantize(dtype=torch.bfloat16).state_dict()
    mine = load_file(str(ours / "model.safetensors"))
    for key in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert torch.equal(mine[key], theirs[key].to(torch.bfloat16)), key

    # Merge: adapter trained on top of the 4-bit base, folded into the dequantized 16-bit weights.
    model = AutoModelForCausalLM.from_pretrained(str(ours), dtype=torch.float32)
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["v_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(str(tmp_path / "adapter"))
    plan = plan_merge(tmp_path / "bnb", None, loaded_in_4bit=True)
    assert plan.source == "dequantized"
    out = tmp_path / "merged"
    out.mkdir()
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<eos>": 1}, "a")))
    merge_onto(plan, tmp_path / "adapter", out, tok, [1])
    merged = load_file(str(out / "model.safetensors"))
    assert all(t.dtype in (torch.bfloat16, torch.int64) for t in merged.values())
    assert not any("absmax" in k or "quant_state" in k for k in merged)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
