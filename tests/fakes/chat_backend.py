"""A scripted `ChatBackend` for tests: a fixed reply, word by word through `on_token`, usage and finish
reason as configured, an optional per-word delay, and honouring `cancel`. It records every call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from serving.llm.base import ChatResult, TokenSink, stream_via_chat


class ScriptedBackend:
    def __init__(
        self,
        model: str,
        reply: str,
        *,
        prompt_tokens: int = 7,
        completion_tokens: int = 3,
        finish_reason: str = "stop",
        word_delay_s: float = 0.0,
    ) -> None:
        self.model, self.reply = model, reply
        self.usage = (prompt_tokens, completion_tokens)
        self.finish_reason, self.word_delay_s = finish_reason, word_delay_s
        self.calls: list[dict[str, Any]] = []
        self.words_generated = 0
        self._lock = threading.Lock()

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_token: TokenSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatResult:
        with self._lock:
            self.calls.append(
                {
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "stream": on_token is not None,
                }
            )
        pieces: list[str] = []
        for word in self.reply.split(" "):
            if cancel is not None and cancel.is_set():
                return ChatResult("".join(pieces).strip(), self.model, *self.usage, finish_reason="cancelled")
            time.sleep(self.word_delay_s)
            with self._lock:
                self.words_generated += 1
            pieces.append(word + " ")
            if on_token is not None:
                on_token(word + " ")
        return ChatResult(self.reply, self.model, *self.usage, finish_reason=self.finish_reason)

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        return stream_via_chat(self, messages, max_tokens=max_tokens, temperature=temperature)
