"""One interface for every LLM backend (Ollama in production, llama-cpp-python locally).

Everything about one request (limits, the token callback, the cancel flag) travels as arguments:
backends are shared by concurrent requests and keep no per-request state on themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

TokenSink = Callable[[str], None]


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" (OpenAI's values); "cancelled" if the client left
    extra: dict[str, object] = field(default_factory=dict)


class ChatBackend(Protocol):
    """A chat model. `messages` are OpenAI-style dicts with `role` and `content`.

    `chat` returns the whole reply with usage and finish reason; with `on_token` it also calls it
    with each piece as it is generated. Once `cancel` is set the backend stops generating as soon as
    it can (the client went away) and returns what it has with finish_reason "cancelled".
    """

    model: str

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_token: TokenSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatResult: ...

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]: ...


def stream_via_chat(backend: ChatBackend, messages: list[dict[str, str]], **kwargs: object) -> Iterator[str]:
    """`stream` in terms of `chat(on_token=...)`: a worker thread generates, the caller iterates;
    closing the iterator early cancels the generation."""
    import queue

    pieces: queue.Queue[object] = queue.Queue()
    cancel = threading.Event()
    done = object()
    box: dict[str, BaseException] = {}

    def work() -> None:
        try:
            backend.chat(messages, on_token=pieces.put, cancel=cancel, **kwargs)  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            pieces.put(done)

    worker = threading.Thread(target=work, name=f"stream-{backend.model}", daemon=True)
    worker.start()
    try:
        while (item := pieces.get()) is not done:
            yield item  # type: ignore[misc]
    finally:
        cancel.set()
        worker.join()
    if "error" in box:
        raise box["error"]
