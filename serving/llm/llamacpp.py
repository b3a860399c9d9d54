"""llama-cpp-python on a local GGUF file: the backend for laptops and tests.

The chat template is the one embedded in the GGUF (`tokenizer.chat_template`): a fine-tune served
with another template than it was trained on degrades badly, so a GGUF without one is refused rather
than silently formatted as llama-2 (llama-cpp-python's fallback). Generation stops on every
end-of-generation token of the vocabulary (llama.cpp's `llama_vocab_is_eog`: EOS, EOT, `<|im_end|>`,
`<|endoftext|>`, ...), and the textual forms of the chat family's end tokens (one list, owned by
components.common.chat_families and shared with training and export) are extra stop strings,
because a fine-tune may emit them as plain text.

A llama.cpp context generates one reply at a time, so each model has its own gate (concurrency 1,
a bounded queue): the describer and the QA model generate in parallel, requests for one model queue.
A logits processor meters every request (prompt and completion tokens, also when streaming) and, once
the request's cancel flag is set, forces the end-of-generation token so llama.cpp stops at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from components.common import chat_families
from components.common.errors import InputError
from serving.llm.base import ChatResult, TokenSink, stream_via_chat
from serving.llm.errors import BackendError, BackendUnavailable
from serving.llm.gate import Gate


def end_markers(chat_template: str) -> tuple[str, ...]:
    """The end tokens of the template's chat family (components.common.chat_families owns them);
    every known end token for a template of another family (still served: llama.cpp stops on EOG)."""
    try:
        return chat_families.detect(chat_template).end_tokens
    except chat_families.UnknownChatFamily:
        return chat_families.known_end_tokens()


def _load_llama(model_path: Path, n_ctx: int, n_threads: int) -> Any:
    try:
        import llama_cpp
    except ImportError as exc:  # the wheel is optional: Ollama serves in production
        raise BackendUnavailable("llama-cpp-python is not installed (pip install llama-cpp-python)") from exc
    # "chat_template.default" is the handler llama-cpp-python builds from the GGUF's own
    # tokenizer.chat_template; naming it skips the name guessing and the llama-2 fallback.
    return llama_cpp.Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        n_threads=n_threads,
        chat_format="chat_template.default",
        verbose=False,
    )


class _Meter:
    """A llama.cpp logits processor: counts prompt and generated tokens, and once `cancel` is set makes
    the end-of-generation token the only choice, so the reply ends at the next token."""

    def __init__(self, eos: int, cancel: threading.Event | None) -> None:
        self.eos, self.cancel = eos, cancel
        self.prompt_tokens: int | None = None
        self.steps = 0
        self.cancelled = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        self.steps += 1
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            scores[:] = -float("inf")
            scores[self.eos] = 0.0
        return scores


class LlamaCppBackend:
    """A `ChatBackend` over `llama_cpp.Llama`: one reply at a time per model, a bounded queue before it."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        model: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        extra_stops: Sequence[str] = (),
        llama: Any | None = None,
        max_waiting: int = 16,
    ) -> None:
        self.model_path = Path(model_path)
        self.model = model or self.model_path.stem
        if llama is None:
            if not self.model_path.is_file():
                raise InputError("GGUF model file not found", path=self.model_path)
            llama = _load_llama(self.model_path, n_ctx, n_threads or (os.cpu_count() or 1))
        self._llm = llama
        self.gate = Gate(f"llama.cpp {self.model}", concurrency=1, max_waiting=max_waiting)
        metadata: dict[str, str] = dict(getattr(llama, "metadata", {}) or {})
        if "tokenizer.chat_template" not in metadata:
            raise InputError(
                "GGUF has no embedded chat template (tokenizer.chat_template); refusing to guess one",
                path=self.model_path,
            )
        self.chat_template = metadata["tokenizer.chat_template"]
        self.chat_format = getattr(llama, "chat_format", None)
        markers = [m for m in end_markers(self.chat_template) if m in self.chat_template or self._is_token(m)]
        self.stop = list(dict.fromkeys([*markers, *extra_stops]))  # + the exported Modelfile's stops

    def _is_token(self, text: str) -> bool:
        tokenize = getattr(self._llm, "tokenize", None)
        if tokenize is None:
            return False
        try:
            return len(tokenize(text.encode(), add_bos=False, special=True)) == 1
        except Exception:  # an odd vocabulary only loses an optional stop string
            return False

    def _eos(self) -> int:
        token_eos = getattr(self._llm, "token_eos", None)
        return int(token_eos()) if callable(token_eos) else 0

    def _call(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float, stream: bool, meter: _Meter
    ) -> Any:
        try:
            return self._llm.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                stream=stream,
                stop=self.stop,
                logits_processor=[meter],
            )
        except ValueError as exc:  # llama.cpp raises ValueError for prompts over n_ctx
            raise BackendError(f"llama.cpp rejected the request: {exc}") from exc

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_token: TokenSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatResult:
        meter = _Meter(self._eos(), cancel)
        with self.gate.slot(cancel):
            if on_token is None:
                out = self._call(messages, max_tokens, temperature, False, meter)
                choice, usage = out["choices"][0], out.get("usage") or {}
                text, finish = choice["message"].get("content") or "", choice.get("finish_reason")
                prompt = int(usage.get("prompt_tokens", meter.prompt_tokens or 0))
                completion = int(usage.get("completion_tokens", meter.steps))
            else:
                text, finish = self._generate_streaming(messages, max_tokens, temperature, meter, on_token)
                prompt, completion = meter.prompt_tokens or 0, max(0, meter.steps - (finish == "stop"))
        return ChatResult(
            text=text.strip(),
            model=self.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            finish_reason="cancelled" if meter.cancelled else (finish or "stop"),
        )

    def _generate_streaming(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float,
        meter: _Meter,
        sink: TokenSink,
    ) -> tuple[str, str | None]:
        pieces: list[str] = []
        finish = None
        for chunk in self._call(messages, max_tokens, temperature, True, meter):
            choice = chunk["choices"][0]
            piece = choice.get("delta", {}).get("content")
            if piece:
                pieces.append(piece)
                sink(piece)
            finish = choice.get("finish_reason") or finish
        return "".join(pieces), finish

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        return stream_via_chat(self, messages, max_tokens=max_tokens, temperature=temperature)

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if close is not None:
            close()
