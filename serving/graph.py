"""The serving router as a LangGraph `StateGraph` with an explicit route table.

    classify --(ROUTES)--> describe                      (describer model, title -> description)
             \\-----------> retrieve -> answer            (vector search, then QA model with context)

`classify` records route, confidence and reason (and logs them). `retrieve` keeps only products whose
cosine similarity is at least `threshold` percent; when none is left, `answer` does not call the QA
model at all: it returns NO_MATCH_ANSWER and no sources, so nothing is invented. Otherwise the QA
model sees exactly the products listed in `sources` (their uids), and the answer cites them.
Prompts come from components/common/chat_format.py: the layouts the models were trained on.

Everything about one request lives in its `RequestContext` (LangGraph's run-scoped context): a route
forced by the API model, generation limits, the token sink of a streaming reply, the cancel flag set
when the client leaves, and the model calls made (usage, finish reason). The compiled graph and its
backends are shared by concurrent requests and hold none of it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from components.common.chat_format import NO_MATCH_ANSWER, describer_messages, qa_messages
from components.common.retrieval.base import context_products
from serving.config import ServingSettings
from serving.llm.base import ChatBackend, ChatResult, TokenSink
from serving.retrieval.base import Hit, VectorStore, threshold_to_min_score
from serving.retrieval.embedder import TextEmbedder
from serving.router.classifier import RouterClassifier
from serving.router.features import strip_imperative

log = logging.getLogger(__name__)

# Route name (classifier output) -> graph node. Every route must be listed: no implicit default.
ROUTES: dict[str, str] = {"describe": "describe", "answer": "retrieve"}


class RouterState(TypedDict, total=False):
    input: str
    threshold: float  # similarity threshold, percent (0-100)
    route: str
    confidence: float
    reason: str
    hits: list[Hit]
    answer: str
    sources: list[str]  # uids of the products given to the QA model as context
    model: str


@dataclass
class RequestContext:
    """One request's settings and record; see the module docstring."""

    forced_route: str | None = None  # set by the API model (`prodtune-describer` -> "describe")
    forced_by: str = ""
    max_tokens: int | None = None  # None: the settings' per-route default
    temperature: float | None = None
    on_token: TokenSink | None = None
    cancel: threading.Event | None = None
    calls: list[ChatResult] = field(default_factory=list)

    def generate(
        self, backend: ChatBackend, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> ChatResult:
        result = backend.chat(
            messages,
            max_tokens=self.max_tokens or max_tokens,
            temperature=self.temperature if self.temperature is not None else temperature,
            on_token=self.on_token,
            cancel=self.cancel,
        )
        self.calls.append(result)
        return result


@dataclass(frozen=True)
class ForcedDecision:
    """What `classify` records when the API model forces the route."""

    route: str
    confidence: float
    reason: str


def cite(answer: str, hits: list[Hit]) -> str:
    lines = [f"[{h.uid}] {h.title}" for h in hits]
    return answer.rstrip() + "\n\nSources: " + "; ".join(lines)


def build_graph(
    classifier: RouterClassifier,
    store: VectorStore,
    embedder: TextEmbedder,
    describer: ChatBackend,
    qa: ChatBackend,
    settings: ServingSettings | None = None,
) -> Any:
    """Compile the router graph. Invoke with `{"input": text}` and optionally `"threshold"` (percent),
    and `context=RequestContext(...)` (a default one when omitted)."""
    settings = settings or ServingSettings()

    def ctx_of(runtime: Runtime[RequestContext]) -> RequestContext:
        return runtime.context if runtime.context is not None else RequestContext()

    def classify(state: RouterState, runtime: Runtime[RequestContext]) -> RouterState:
        ctx = ctx_of(runtime)
        if ctx.forced_route is not None:
            decision: Any = ForcedDecision(ctx.forced_route, 1.0, f"forced by model {ctx.forced_by}")
        else:
            decision = classifier.classify(state["input"])
        log.info("route %s (%.2f): %s", decision.route, decision.confidence, decision.reason)
        return {"route": decision.route, "confidence": decision.confidence, "reason": decision.reason}

    def pick(state: RouterState) -> str:
        return ROUTES[state["route"]]

    def describe(state: RouterState, runtime: Runtime[RequestContext]) -> RouterState:
        title = strip_imperative(state["input"])
        result = ctx_of(runtime).generate(
            describer, describer_messages(title), settings.describe_max_tokens, settings.temperature
        )
        return {"answer": result.text.strip(), "sources": [], "hits": [], "model": result.model}

    def retrieve(state: RouterState) -> RouterState:
        threshold = float(state.get("threshold", settings.similarity_threshold))
        vector = embedder.encode([state["input"]])[0]
        hits = store.search(vector, k=settings.top_k, min_score=threshold_to_min_score(threshold))
        log.info("retrieved %d product(s) at >= %g%%: %s", len(hits), threshold, [h.uid for h in hits])
        return {"hits": hits, "threshold": threshold}

    def answer(state: RouterState, runtime: Runtime[RequestContext]) -> RouterState:
        hits = state.get("hits", [])
        if not hits:
            return {
                "answer": NO_MATCH_ANSWER.format(threshold=state["threshold"]),
                "sources": [],
                "model": "",
            }
        context = context_products(hits, settings.context_content_chars)
        result = ctx_of(runtime).generate(
            qa, qa_messages(state["input"], context), settings.answer_max_tokens, settings.temperature
        )
        return {"answer": cite(result.text, hits), "sources": [h.uid for h in hits], "model": result.model}

    graph = StateGraph(RouterState, context_schema=RequestContext)
    graph.add_node("classify", classify)
    graph.add_node("describe", describe)
    graph.add_node("retrieve", retrieve)
    graph.add_node("answer", answer)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", pick, {node: node for node in ROUTES.values()})
    graph.add_edge("retrieve", "answer")
    graph.add_edge("describe", END)
    graph.add_edge("answer", END)
    return graph.compile()
