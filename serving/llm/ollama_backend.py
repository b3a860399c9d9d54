"""Ollama through its official `ollama` client: the production backend.

The model name is Ollama's (`prodtune-qa:champion`); the Modelfile created at export time carries the
fine-tune's chat template and stop tokens, so messages go to `/api/chat` as they are. Tested only on
recorded `/api/chat` payloads replayed by a local HTTP server (see tests/unit/test_ollama_backend.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from serving.llm.base import ChatResult
from serving.llm.errors import BackendError, BackendUnavailable

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
    ) -> None:
        self.model = model
        self.keep_alive = keep_alive
        self.options = dict(options or {})
        if client is None:
            import ollama

            client = ollama.Client(host=host, timeout=timeout)
        self._client = client

    def _options(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {**self.options, "num_predict": max_tokens, "temperature": temperature}

    def _chat(self, messages: list[dict[str, str]], options: dict[str, Any], stream: bool) -> Any:
        import httpx
        import ollama

        try:
            return self._client.chat(
                model=self.model,
                messages=messages,
                options=options,
                stream=stream,
                keep_alive=self.keep_alive,
            )
        except ollama.ResponseError as exc:
            raise BackendError(f"ollama {self.model}: {exc.error} (HTTP {exc.status_code})") from exc
        except (ConnectionError, httpx.TransportError) as exc:
            raise BackendUnavailable(f"ollama is unreachable: {exc}") from exc

    def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> ChatResult:
        resp = self._chat(messages, self._options(max_tokens, temperature), stream=False)
        message = _get(resp, "message")
        done_reason = _get(resp, "done_reason") or "stop"
        return ChatResult(
            text=(_get(message, "content") or "").strip(),
            model=_get(resp, "model") or self.model,
            prompt_tokens=int(_get(resp, "prompt_eval_count") or 0),
            completion_tokens=int(_get(resp, "eval_count") or 0),
            finish_reason=_FINISH.get(done_reason, "stop"),
            extra={"total_duration_ns": _get(resp, "total_duration"), "done_reason": done_reason},
        )

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        import httpx
        import ollama

        chunks = self._chat(messages, self._options(max_tokens, temperature), stream=True)
        try:
            for chunk in chunks:
                piece = _get(_get(chunk, "message"), "content")
                if piece:
                    yield piece
        except ollama.ResponseError as exc:  # an error line in the middle of the NDJSON stream
            raise BackendError(f"ollama {self.model}: {exc.error}") from exc
        except (ConnectionError, httpx.TransportError) as exc:  # the stream connects lazily
            raise BackendUnavailable(f"ollama is unreachable or the stream broke: {exc}") from exc
