"""HF -> GGUF conversion and quantization, hermetic: nothing is compiled or downloaded at run time.

- Conversion runs llama.cpp's own `convert_hf_to_gguf.py` with the `gguf-py` shipped beside it, both
  taken once from the pinned llama-cpp-python sdist (PyPI `gguf` lags the converter's names).
- Quantization calls `llama_model_quantize` of the installed llama-cpp-python binding (prebuilt wheel).
- `GGUFRunner` loads a GGUF with llama-cpp-python for generation, logits, perplexity and speed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.common.atomic import atomic_dir, atomic_path
from components.common.errors import InputError

log = logging.getLogger(__name__)

CONVERTER = "convert_hf_to_gguf.py"
# What the converter needs from the sdist: the script, its `conversion` package and gguf-py.
_SDIST_MEMBERS = (CONVERTER, "conversion", "gguf-py")
_MARKER = ".extracted"
# Extraction filters (PEP 706) came in Python 3.11.4; Debian bookworm's 3.11.2, the images'
# interpreter, lacks them, so there the members are vetted by hand (see _safe_member).
_TAR_FILTER: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}

# Quant level name -> llama_cpp ftype constant name (the binding's LLAMA_FTYPE_MOSTLY_*).
QUANT_FTYPES = {
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
}


class ExportError(RuntimeError):
    """Conversion, quantization or loading failed (with the tool's own message)."""


def ensure_converter(tools_dir: str | Path, sdist: str | Path) -> Path:
    """Extract the converter and its gguf-py from the sdist into `tools_dir` once; return tools_dir.

    Idempotent and crash-safe: extraction goes to a temp dir renamed into place at the end.
    """
    tools_dir = Path(tools_dir).expanduser()
    if (tools_dir / _MARKER).is_file():
        return tools_dir
    sdist = Path(sdist).expanduser()
    if not sdist.is_file():
        raise InputError(
            "llama-cpp-python sdist not found (run scripts/setup.sh)", path=sdist, field="sdist_path"
        )
    with atomic_dir(tools_dir) as tmp:
        with tarfile.open(sdist) as tar:
            members = []
            for member in tar.getmembers():
                parts = Path(member.name).parts
                # <pkg>-<ver>/vendor/llama.cpp/<rest>
                if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp") or parts[3] not in _SDIST_MEMBERS:
                    continue
                if not _safe_member(member):
                    raise InputError(f"unsafe member {member.name!r} in the sdist", path=sdist)
                member.name = str(Path(*parts[3:]))
                members.append(member)
            if not any(m.name == CONVERTER for m in members):
                raise InputError(f"{CONVERTER} not in the sdist", path=sdist)
            tar.extractall(tmp, members=members, **_TAR_FILTER)
        (tmp / _MARKER).write_text(f"{sdist.name}\n", encoding="utf-8")
    return tools_dir


def _safe_member(member: tarfile.TarInfo) -> bool:
    """A plain file or dir with a relative path that stays inside the target (what filter="data" enforces)."""
    parts = Path(member.name).parts
    return (member.isfile() or member.isdir()) and not Path(member.name).is_absolute() and ".." not in parts


def tools_env(tools_dir: Path) -> dict[str, str]:
    """Environment for the sdist's scripts: its own gguf-py first, offline HF libraries."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tools_dir / "gguf-py"), env.get("PYTHONPATH")]))
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def _run_tool(args: Sequence[str], tools_dir: Path, what: str) -> None:
    proc = subprocess.run(
        [sys.executable, *args], env=tools_env(tools_dir), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ExportError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def convert_hf_to_gguf(
    hf_dir: str | Path, out_path: str | Path, tools_dir: Path, outtype: str = "f16"
) -> Path:
    """Run llama.cpp's converter on an HF model dir; the GGUF appears atomically at `out_path`."""
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if not (hf_dir / "config.json").is_file():
        raise InputError("not a Hugging Face model dir (no config.json)", path=hf_dir)
    with atomic_path(out_path) as tmp:
        args = [str(tools_dir / CONVERTER), str(hf_dir), "--outfile", str(tmp), "--outtype", outtype]
        _run_tool(args, tools_dir, f"convert_hf_to_gguf {hf_dir}")
        _readable(tmp)
    return out_path


def set_chat_template(src: str | Path, dst: str | Path, chat_template: str, tools_dir: Path) -> Path:
    """Copy a GGUF with another embedded chat template (gguf-py's gguf_new_metadata script)."""
    script = tools_dir / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    with atomic_path(dst) as tmp:
        tmp.unlink()  # the script refuses to overwrite
        args = [str(script), str(src), str(tmp), "--chat-template", chat_template, "--force"]
        _run_tool(args, tools_dir, "gguf_new_metadata")
        _readable(tmp)
    return Path(dst)


def quantize(
    src: str | Path, dst: str | Path, level: str, threads: int = 0, *, verbose: bool = False
) -> Path:
    """Quantize `src` (f16 GGUF) to `level` through the binding's llama_model_quantize."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    if level not in QUANT_FTYPES:
        raise InputError(
            f"unknown quant level {level!r} (known: {', '.join(QUANT_FTYPES)})", field="quant_levels"
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[level])
    params.nthread = threads
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        # llama.cpp prints a line per tensor from C; keep pipeline logs readable.
        with suppress_stdout_stderr(disable=verbose):
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise ExportError(f"llama_model_quantize {src} -> {level} returned {rc}")
        _readable(tmp)
    return dst


def _readable(path: Path) -> None:
    """mkstemp files are 0600; model files are read by servers running as other users."""
    path.chmod(0o644)


class GGUFRunner:
    """A GGUF loaded with llama-cpp-python: tokenize, logits, greedy decoding, perplexity, speed.

    Greedy decoding is our own argmax loop over the raw logits, so it is deterministic and exactly
    comparable with transformers' greedy search (no sampler chain, no repeat penalty).
    """

    def __init__(
        self, path: str | Path, *, n_ctx: int = 1024, threads: int | None = None, seed: int = 0
    ) -> None:
        import llama_cpp

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("GGUF file not found", path=self.path)
        self.llm = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_batch=min(n_ctx, 512),
            logits_all=True,
            n_threads=threads or max(1, os.cpu_count() or 1),
            seed=seed,
            verbose=False,
        )
        self.n_ctx = n_ctx

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.llm.metadata)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Tokens as a server tokenizes a prompt: special tokens parsed, BOS only if the model adds one."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids), special=True).decode("utf-8", errors="replace")

    def token_to_piece(self, token: int) -> str:
        return self.detokenize([token])

    @property
    def eos_ids(self) -> set[int]:
        return {self.llm.token_eos()}

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits after each position of `ids` (row i predicts token i+1)."""
        if len(ids) > self.n_ctx:
            raise ExportError(f"{len(ids)} tokens exceed n_ctx={self.n_ctx}")
        self.llm.reset()
        self.llm.eval(list(ids))
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, prompt: Sequence[int], n_tokens: int, stop_ids: set[int]) -> list[int]:
        out: list[int] = []
        for tok in self._greedy_iter(prompt, n_tokens):
            out.append(tok)
            if tok in stop_ids:
                break
        return out

    def _greedy_iter(self, prompt: Sequence[int], n_tokens: int) -> Iterator[int]:
        self.llm.reset()
        self.llm.eval(list(prompt))
        for _ in range(n_tokens):
            tok = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            yield tok
            if self.llm.n_tokens + 1 > self.n_ctx:
                return
            self.llm.eval([tok])

    def greedy_and_forced(
        self, prompt: Sequence[int], n_tokens: int, stop_ids: set[int], forced: Sequence[int]
    ) -> tuple[list[int], np.ndarray]:
        """Greedy continuation of `prompt`, and the logits that predict each token of `forced` after
        `prompt` (row i: given prompt + forced[:i]), with the prompt evaluated once. Scoring both from
        one prompt (the gate's answer and NLL, fidelity's free and teacher-forced tokens) used to
        evaluate it twice, most of the gate's time on retrieval-length QA prompts."""
        if len(prompt) + len(forced) > self.n_ctx:
            raise ExportError(f"{len(prompt) + len(forced)} tokens exceed n_ctx={self.n_ctx}")
        free = self.greedy(prompt, n_tokens, stop_ids)
        if len(forced) > 1:
            self.llm.n_tokens = len(prompt)  # eval() drops the cache from here on: the greedy tokens
            self.llm.eval(list(forced[:-1]))
        # Row len(prompt) - 1 is still the prompt's own (it predicts forced[0]); the rows after it are
        # forced[:-1]'s, written over the greedy tokens'.
        start = len(prompt) - 1
        return free, np.array(self.llm.scores[start : start + len(forced)], dtype=np.float32)

    def tokens_per_second(self, prompt: Sequence[int], n_tokens: int) -> float:
        """Decode speed: greedy tokens per second after the prompt is processed (EOS ignored)."""
        it = self._greedy_iter(prompt, n_tokens + 1)
        next(it)  # the first token comes from prompt processing; time only decoding
        start = time.perf_counter()
        produced = sum(1 for _ in it)
        return produced / max(time.perf_counter() - start, 1e-9)

    def nll(self, ids: Sequence[int], start: int = 1) -> tuple[float, int]:
        """Summed negative log-likelihood of ids[start:] given their prefix, and the token count."""
        return summed_nll(self.logits(ids)[start - 1 : len(ids) - 1], ids[start:]), len(ids) - start

    def perplexity(self, texts: Sequence[str], max_tokens: int) -> tuple[float, int]:
        """Perplexity over held-out texts (each cut to `max_tokens` and n_ctx), and tokens scored."""
        total, count = 0.0, 0
        for text in texts:
            ids = self.tokenize(text)[: min(max_tokens, self.n_ctx)]
            if len(ids) < 2:
                continue
            nll, n = self.nll(ids)
            total, count = total + nll, count + n
        if count == 0:
            raise InputError("held-out text is empty: cannot measure perplexity", field="heldout_path")
        return float(np.exp(total / count)), count


def summed_nll(rows: np.ndarray, targets: Sequence[int]) -> float:
    """-sum log softmax(rows[i])[targets[i]], in float64 (a max-shifted log-sum-exp: numpy's
    logaddexp.reduce took seconds per 49k-token vocabulary row set)."""
    rows = np.asarray(rows, dtype=np.float64)
    peak = rows.max(axis=1, keepdims=True)
    log_z = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
    return float(np.sum(log_z - rows[np.arange(len(targets)), np.asarray(targets)]))


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """GGUF key/values through llama-cpp-python (vocab only: cheap for any model size)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return dict(llm.metadata)
    finally:
        with contextlib.suppress(Exception):
            llm.close()
