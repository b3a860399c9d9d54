"""A small, deterministic `Responder` for tests and UI work without the real router, store or models.

Routing: text that reads like a question goes to "answer", anything else to "describe". Retrieval:
word overlap (Jaccard) between the input and each product title, as a 0-1 score, kept when
`score * 100 >= threshold`. Answers come from a given `ChatBackend` (for example a real llama.cpp
model) or, without one, are composed from the best product's text. Not used by `prodtune serve`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from components.common.chat_format import describer_messages, qa_messages
from serving.api.responder import MODELS, RouteResult, Source
from serving.llm.base import ChatBackend, TokenSink

_WORD = re.compile(r"[a-z0-9]+")
DEFAULT_THRESHOLD = 50.0
_QUESTION_WORDS = {"what", "which", "how", "does", "is", "are", "can", "do", "who", "why", "where", "when"}


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class CatalogResponder:
    def __init__(self, products: Sequence[tuple[str, str, str]], backend: ChatBackend | None = None) -> None:
        self.products = list(products)  # (uid, title, content)
        self.backend = backend
        self.calls: list[tuple[str, float, str]] = []

    def _route(self, text: str, model: str) -> tuple[str, float, str]:
        forced = MODELS.get(model)
        if forced:
            return forced, 1.0, f"forced by model {model}"
        words = text.lower().split()
        if text.rstrip().endswith("?") or (words and words[0] in _QUESTION_WORDS):
            return "answer", 0.9, "reads like a question about a product"
        return "describe", 0.8, "reads like a product title"

    def _hits(self, text: str, threshold: float) -> list[tuple[Source, str]]:
        query = _words(text)
        scored = []
        for uid, title, content in self.products:
            title_words = _words(title)
            score = len(query & title_words) / max(1, len(query | title_words))
            if score > 0 and score * 100 >= threshold:
                scored.append((Source(uid, title, round(score, 4)), content))
        return sorted(scored, key=lambda h: -h[0].score)[:3]

    def _messages(self, route: str, text: str, hits: list[tuple[Source, str]]) -> list[dict[str, str]]:
        if route == "describe":
            return describer_messages(text)
        return qa_messages(text, [(s.title, content) for s, content in hits])

    def _plan(
        self, text: str, threshold: float | None, model: str
    ) -> tuple[str, float, str, list[tuple[Source, str]]]:
        self.calls.append((text, threshold, model))
        route, confidence, reason = self._route(text, model)
        hits = (
            self._hits(text, DEFAULT_THRESHOLD if threshold is None else threshold)
            if route == "answer"
            else []
        )
        return route, confidence, reason, hits

    def _composed(self, route: str, text: str, hits: list[tuple[Source, str]]) -> str:
        if route == "describe":
            return f"{text.strip()}: a product description would be written here."
        if not hits:
            return "I do not know: no product matched the question."
        source, content = hits[0]
        return f"According to {source.title}: {content}"

    def respond(
        self,
        text: str,
        threshold: float | None,
        model: str,
        *,
        max_tokens: int,
        temperature: float,
        on_token: TokenSink | None = None,
        cancel: threading.Event | None = None,
    ) -> RouteResult:
        route, confidence, reason, hits = self._plan(text, threshold, model)
        if self.backend is not None:
            out = self.backend.chat(
                self._messages(route, text, hits),
                max_tokens=max_tokens,
                temperature=temperature,
                on_token=on_token,
                cancel=cancel,
            )
            answer, usage, finish = out.text, (out.prompt_tokens, out.completion_tokens), out.finish_reason
        else:
            answer, usage, finish = self._composed(route, text, hits), (0, 0), "stop"
            for piece in re.findall(r"\S+\s*", answer) if on_token is not None else ():
                on_token(piece)
        return RouteResult(
            route, confidence, reason, answer, [s for s, _ in hits], *usage, finish_reason=finish
        )

    def ready(self) -> dict[str, bool]:
        return {"catalog": bool(self.products), "backend": True}


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` under a real uvicorn on a free port in a thread; yield its base URL; stop it after."""
    import uvicorn

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
