"""Ollama through its official `ollama` client: the production backend.

The model name is Ollama's (`prodtune-qa:champion`); the Modelfile created at export time carries the
fine-tune's chat template and stop tokens, so messages go to `/api/chat` as they are. Tested only on
recorded `/api/chat` payloads replayed by a local HTTP server (see tests/unit/test_ollama_backend.py)
and on a protocol-faithful fake (tests/fakes/ollama_server.py), not on a live Ollama.

Ollama serves `OLLAMA_NUM_PARALLEL` replies of a model at once, so the backend sends up to
`concurrency` requests at a time (set it to the server's value) and queues at most `max_waiting` more.
Replies are always streamed from Ollama, even for a non-streaming API call: the last NDJSON line
carries the usage and `done_reason`, and closing the stream early is how a cancelled request (its
client left) stops Ollama's generation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from serving.llm.base import ChatResult, TokenSink, stream_via_chat
from serving.llm.errors import BackendError, BackendUnavailable
from serving.llm.gate import Gate

# Ollama's done_reason values mapped onto OpenAI's finish_reason.
_FINISH = {"stop": "stop", "length": "length"}


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Read a field of an `ollama` response object or of a plain dict (older clients return dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


class OllamaBackend:
    """A `ChatBackend` over an Ollama server (`host` like `http://ollama:11434`)."""

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        timeout: float = 120.0,
        keep_alive: str | None = None,
        options: Mapping[str, Any] | None = None,
        client: Any | None = None,
        concurrency: int = 1,
        max_waiting: int = 32,
    ) -> None:
        self.model = model
        self.keep_alive = keep_alive
        self.options = dict(options or {})
        self.gate = Gate(f"ollama {model}", concurrency=concurrency, max_waiting=max_waiting)
        if client is None:
            import ollama

            client = ollama.Client(host=host, timeout=timeout)
        self._client = client

    def _options(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {**self.options, "num_predict": max_tokens, "temperature": temperature}

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_token: TokenSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatResult:
        import httpx
        import ollama

        with self.gate.slot(cancel):
            try:
                return self._consume(self._open(messages, max_tokens, temperature), on_token, cancel)
            except ollama.ResponseError as exc:  # an error status, or an error line mid-stream
                raise BackendError(f"ollama {self.model}: {exc.error} (HTTP {exc.status_code})") from exc
            except (ConnectionError, httpx.TransportError) as exc:  # the stream connects lazily
                raise BackendUnavailable(f"ollama is unreachable or the stream broke: {exc}") from exc

    def _open(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> Iterator[Any]:
        return self._client.chat(
            model=self.model,
            messages=messages,
            options=self._options(max_tokens, temperature),
            stream=True,
            keep_alive=self.keep_alive,
        )

    def _consume(
        self, chunks: Iterator[Any], on_token: TokenSink | None, cancel: threading.Event | None
    ) -> ChatResult:
        pieces: list[str] = []
        last: Any = None
        cancelled = False
        try:
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break  # closing the stream makes Ollama stop generating
                piece = _get(_get(chunk, "message"), "content")
                if piece:
                    pieces.append(piece)
                    if on_token is not None:
                        on_token(piece)
                last = chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        done_reason = (_get(last, "done_reason") if last is not None else None) or "stop"
        return ChatResult(
            text="".join(pieces).strip(),
            model=(_get(last, "model") if last is not None else None) or self.model,
            prompt_tokens=int(_get(last, "prompt_eval_count") or 0) if last is not None else 0,
            completion_tokens=int(_get(last, "eval_count") or 0) if last is not None else 0,
            finish_reason="cancelled" if cancelled else _FINISH.get(done_reason, "stop"),
            extra={"total_duration_ns": _get(last, "total_duration"), "done_reason": done_reason},
        )

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        return stream_via_chat(self, messages, max_tokens=max_tokens, temperature=temperature)
