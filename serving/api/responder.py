"""What the API needs from the serving brain, and the adapter from the LangGraph router graph to it.

The API speaks to a `Responder`; `GraphResponder` adapts the compiled graph of `serving/graph.py`
(`build_graph(...)`, invoked with `{"input", "threshold"}`, returning `route`, `confidence`, `reason`,
`hits`, `answer`, `sources`). Streaming runs the graph in a worker thread while the backends handed
to the graph are wrapped so that their output is teed, token by token, into the HTTP stream.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.llm.base import ChatBackend, ChatResult

ROUTER_MODEL = "prodtune-router"
DESCRIBER_MODEL = "prodtune-describer"
QA_MODEL = "prodtune-qa"
# API model id -> forced route (None: the router decides).
MODELS: dict[str, str | None] = {ROUTER_MODEL: None, DESCRIBER_MODEL: "describe", QA_MODEL: "answer"}


@dataclass(frozen=True)
class Source:
    uid: str
    title: str
    score: float  # similarity, 0-1


@dataclass(frozen=True)
class RouteResult:
    route: str  # "describe" | "answer"
    confidence: float
    reason: str
    answer: str
    sources: list[Source] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    threshold: float | None = None  # the similarity threshold retrieval used, when it ran


class Responder(Protocol):
    """`threshold` is the similarity percent (0-100); None leaves the responder's own default."""

    def respond(
        self, text: str, threshold: float | None, model: str, *, max_tokens: int, temperature: float
    ) -> RouteResult: ...

    def respond_stream(
        self, text: str, threshold: float | None, model: str, *, max_tokens: int, temperature: float
    ) -> Iterator[str | RouteResult]:
        """Yield answer text pieces as they are generated, then one final `RouteResult`."""
        ...

    def ready(self) -> dict[str, bool]:
        """Each component's readiness (models, store); `/readyz` is 200 only when all are true."""
        ...


def _hit_value(hit: Any, key: str, default: Any = None) -> Any:
    return hit.get(key, default) if isinstance(hit, Mapping) else getattr(hit, key, default)


def result_from_state(state: Mapping[str, Any], usage: tuple[int, int] = (0, 0)) -> RouteResult:
    """Turn the graph's final state into a `RouteResult` (hits carry uid, score, title, content)."""
    hits = list(state.get("hits") or [])
    cited = [str(uid) for uid in state.get("sources") or []]
    by_uid = {str(_hit_value(h, "uid")): h for h in hits}
    order = cited or list(by_uid)  # the sources the answer used first, else every hit
    sources = [
        Source(
            uid=uid,
            title=str(_hit_value(by_uid[uid], "title", "")),
            score=float(_hit_value(by_uid[uid], "score", 0.0)),
        )
        if uid in by_uid
        else Source(uid=uid, title="", score=0.0)
        for uid in order
    ]
    return RouteResult(
        route=str(state.get("route", "")),
        confidence=float(state.get("confidence") or 0.0),
        reason=str(state.get("reason") or ""),
        answer=str(state.get("answer") or "").strip(),
        sources=sources,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        threshold=float(state["threshold"]) if state.get("threshold") is not None else None,
    )


class _TeeBackend:
    """Wraps a graph backend: applies the request's generation limits and tees tokens to a sink."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.model = inner.model
        self.max_tokens: int | None = None
        self.temperature: float | None = None
        self.sink: queue.Queue[Any] | None = None
        self.usage = [0, 0]

    def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> ChatResult:
        max_tokens = self.max_tokens or max_tokens
        temperature = self.temperature if self.temperature is not None else temperature
        if self.sink is None:
            result = self.inner.chat(messages, max_tokens=max_tokens, temperature=temperature)
            self.usage[0] += result.prompt_tokens
            self.usage[1] += result.completion_tokens
            return result
        pieces = []
        for piece in self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature):
            pieces.append(piece)
            self.sink.put(piece)
        return ChatResult(text="".join(pieces).strip(), model=self.model)

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        for piece in self.inner.stream(
            messages,
            max_tokens=self.max_tokens or max_tokens,
            temperature=self.temperature if self.temperature is not None else temperature,
        ):
            if self.sink is not None:
                self.sink.put(piece)
            yield piece


@dataclass(frozen=True)
class ForcedDecision:
    """What a classifier returns when the API model forces the route."""

    route: str
    confidence: float
    reason: str
    source: str = "forced"

    def as_dict(self) -> dict[str, object]:
        return {"route": self.route, "confidence": self.confidence, "reason": self.reason}


class _ForcibleClassifier:
    """Wraps the router classifier so `prodtune-describer` / `prodtune-qa` can force the route
    through the same graph (retrieval and prompts unchanged)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.forced: tuple[str, str] | None = None  # (route, API model)

    def classify(self, text: str) -> Any:
        if self.forced is not None:
            route, model = self.forced
            return ForcedDecision(route, 1.0, f"forced by model {model}")
        return self.inner.classify(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_DONE = object()


class GraphResponder:
    """A `Responder` over the compiled router graph. One request at a time (the models are CPU-bound)."""

    def __init__(
        self,
        build_graph: Any,
        *,
        classifier: Any,
        store: Any,
        embedder: Any,
        describer: ChatBackend,
        qa: ChatBackend,
        settings: Any,
    ) -> None:
        self.describer = _TeeBackend(describer)
        self.qa = _TeeBackend(qa)
        self.classifier = _ForcibleClassifier(classifier)
        self.store = store
        self.graph = build_graph(self.classifier, store, embedder, self.describer, self.qa, settings)
        self._lock = threading.Lock()

    def _prepare(
        self, text: str, threshold: float | None, model: str, max_tokens: int, temperature: float, sink: Any
    ) -> dict[str, Any]:
        forced = MODELS.get(model)
        self.classifier.forced = (forced, model) if forced else None
        for backend in (self.describer, self.qa):
            backend.max_tokens, backend.temperature, backend.sink = max_tokens, temperature, sink
            backend.usage = [0, 0]
        state: dict[str, Any] = {"input": text}
        if threshold is not None:
            state["threshold"] = float(threshold)
        return state

    def _reset(self) -> None:
        self.classifier.forced = None
        for backend in (self.describer, self.qa):
            backend.max_tokens = backend.temperature = backend.sink = None

    def _usage(self) -> tuple[int, int]:
        return (self.describer.usage[0] + self.qa.usage[0], self.describer.usage[1] + self.qa.usage[1])

    def respond(
        self, text: str, threshold: float | None, model: str, *, max_tokens: int, temperature: float
    ) -> RouteResult:
        with self._lock:
            try:
                state = self._prepare(text, threshold, model, max_tokens, temperature, None)
                return result_from_state(self.graph.invoke(state), self._usage())
            finally:
                self._reset()

    def respond_stream(
        self, text: str, threshold: float | None, model: str, *, max_tokens: int, temperature: float
    ) -> Iterator[str | RouteResult]:
        with self._lock:
            sink: queue.Queue[Any] = queue.Queue()
            state = self._prepare(text, threshold, model, max_tokens, temperature, sink)
            box: dict[str, Any] = {}

            def work() -> None:
                try:
                    box["result"] = result_from_state(self.graph.invoke(state))
                except BaseException as exc:  # re-raised in the request thread
                    box["error"] = exc
                finally:
                    sink.put(_DONE)

            worker = threading.Thread(target=work, name="graph-stream", daemon=True)
            worker.start()
            streamed: list[str] = []
            pending = ""  # trailing whitespace is held back: the final answer is stripped
            try:
                while (item := sink.get()) is not _DONE:
                    text = pending + item if streamed else (pending + item).lstrip()
                    core = text.rstrip()
                    pending = text[len(core) :]
                    if core:
                        streamed.append(core)
                        yield core
            finally:
                worker.join()
                self._reset()
            if "error" in box:
                raise box["error"]
            result: RouteResult = box["result"]
            # The graph may add to what the model said (citations) or answer without a model (no
            # product matched): send that too, so the streamed text equals the non-streamed answer.
            said = "".join(streamed)
            if result.answer.startswith(said) and len(result.answer) > len(said):
                yield result.answer[len(said) :]
            yield result

    def ready(self) -> dict[str, bool]:
        return {"graph": self.graph is not None, "store": _store_ready(self.store)}


def _store_ready(store: Any) -> bool:
    """A store is ready when its own check says so (`ready()`, `is_ready()` or a non-zero `count()`)."""
    if store is None:
        return False
    for name in ("ready", "is_ready", "count"):
        check = getattr(store, name, None)
        if callable(check):
            try:
                return bool(check())
            except TypeError:  # not a zero-argument check (e.g. list.count): try the next one
                continue
            except Exception:
                return False
    return True
