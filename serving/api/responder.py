"""What the API needs from the serving brain, and the adapter from the LangGraph router graph to it.

The API speaks to a `Responder`; `GraphResponder` adapts the compiled graph of `serving/graph.py`
(`build_graph(...)`, invoked with `{"input", "threshold"}`, returning `route`, `confidence`, `reason`,
`hits`, `answer`, `sources`). A streaming reply passes a token sink and a cancel flag in the
request's context; the graph hands both to the backend that generates.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.graph import RequestContext
from serving.llm.base import ChatBackend, ChatResult, TokenSink

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
    """`threshold` is the similarity percent (0-100); None leaves the responder's own default.
    With `on_token`, generated pieces are passed to it as they come; once `cancel` is set the
    generation stops early (the client left)."""

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
    ) -> RouteResult: ...

    def ready(self) -> dict[str, bool]:
        """Each component's readiness (models, store); `/readyz` is 200 only when all are true."""
        ...


def _hit_value(hit: Any, key: str, default: Any = None) -> Any:
    return hit.get(key, default) if isinstance(hit, Mapping) else getattr(hit, key, default)


def result_from_state(state: Mapping[str, Any], calls: Sequence[ChatResult] = ()) -> RouteResult:
    """Turn the graph's final state into a `RouteResult` (hits carry uid, score, title, content);
    usage adds up every model call, the finish reason is the last call's (no call: "stop")."""
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
        prompt_tokens=sum(c.prompt_tokens for c in calls),
        completion_tokens=sum(c.completion_tokens for c in calls),
        finish_reason=calls[-1].finish_reason if calls else "stop",
        threshold=float(state["threshold"]) if state.get("threshold") is not None else None,
    )


class GraphResponder:
    """A `Responder` over the compiled router graph. No lock: each request runs with its own
    `RequestContext`; how many replies a model generates at once is its backend's gate's business."""

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
        self.store = store
        self.graph = build_graph(classifier, store, embedder, describer, qa, settings)

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
        forced = MODELS.get(model)
        ctx = RequestContext(
            forced_route=forced,
            forced_by=model if forced else "",
            max_tokens=max_tokens,
            temperature=temperature,
            on_token=on_token,
            cancel=cancel,
        )
        state: dict[str, Any] = {"input": text}
        if threshold is not None:
            state["threshold"] = float(threshold)
        return result_from_state(self.graph.invoke(state, context=ctx), ctx.calls)

    def ready(self) -> dict[str, bool]:
        return {"graph": self.graph is not None, "store": _store_ready(self.store)}


class StreamText:
    """Turns generated pieces into what a client is sent, so that the streamed text ends equal to the
    final (stripped) answer: leading and trailing white space is held back, and whatever the graph
    added after the model (citations, or the whole no-match answer) is sent at the end."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.pending = ""

    def piece(self, item: str) -> str:
        text = self.pending + item if self.sent else (self.pending + item).lstrip()
        core = text.rstrip()
        self.pending = text[len(core) :]
        if core:
            self.sent.append(core)
        return core

    def rest(self, answer: str) -> str:
        said = "".join(self.sent)
        return answer[len(said) :] if answer.startswith(said) and len(answer) > len(said) else ""


_DONE = object()


def iter_response(
    responder: Responder, text: str, threshold: float | None, model: str, **kwargs: Any
) -> Iterator[str | RouteResult]:
    """A reply as pieces then the final `RouteResult`, from a worker thread; closing the iterator early
    cancels the generation. (The API has its own asyncio version; this one serves tests and scripts.)"""
    pieces: queue.Queue[Any] = queue.Queue()
    cancel = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = responder.respond(
                text, threshold, model, on_token=pieces.put, cancel=cancel, **kwargs
            )
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            pieces.put(_DONE)

    worker = threading.Thread(target=work, name="respond-stream", daemon=True)
    worker.start()
    out = StreamText()
    try:
        while (item := pieces.get()) is not _DONE:
            if core := out.piece(item):
                yield core
    finally:
        cancel.set()
        worker.join()
    if "error" in box:
        raise box["error"]
    if rest := out.rest(box["result"].answer):
        yield rest
    yield box["result"]


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
