"""GraphResponder over a real (tiny) LangGraph graph shaped like serving/graph.py's contract."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, TypedDict

from fastapi.testclient import TestClient
from langgraph.graph import END, START, StateGraph
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.responder import GraphResponder, RouteResult, result_from_state
from serving.api.settings import ApiSettings
from serving.llm.base import ChatResult


class ScriptedBackend:
    """A ChatBackend that replies with a fixed text, word by word, and records its calls."""

    def __init__(self, model: str, reply: str) -> None:
        self.model, self.reply = model, reply
        self.calls: list[dict[str, Any]] = []

    def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> ChatResult:
        self.calls.append(
            {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": False}
        )
        return ChatResult(text=self.reply, model=self.model, prompt_tokens=7, completion_tokens=3)

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        self.calls.append(
            {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        )
        for word in self.reply.split(" "):
            yield word + " "


class QuestionMarkClassifier:
    def classify(self, text: str) -> SimpleNamespace:
        route = "answer" if text.endswith("?") else "describe"
        return SimpleNamespace(route=route, confidence=0.87, reason="test classifier")


class State(TypedDict, total=False):
    input: str
    threshold: float
    route: str
    confidence: float
    reason: str
    hits: list[dict[str, Any]]
    answer: str
    sources: list[str]


HITS = [
    {"uid": "0000031909", "score": 0.91, "title": "Girls Ballet Tutu Neon Pink", "content": "Three layers."},
    {"uid": "B00005N5PF", "score": 0.62, "title": "Pink Tutu Adult", "content": "One size."},
]


def build_graph(classifier, store, embedder, describer, qa, settings):  # type: ignore[no-untyped-def]
    """Contract-shaped: classify -> (retrieve -> answer) | describe; the LLM is called through chat()."""

    def classify(state: State) -> State:
        decision = classifier.classify(state["input"])
        return {"route": decision.route, "confidence": decision.confidence, "reason": decision.reason}

    def retrieve(state: State) -> State:
        threshold = state.get("threshold", 50.0)
        return {"hits": [h for h in store if h["score"] * 100 >= threshold], "threshold": threshold}

    def answer(state: State) -> State:
        out = qa.chat([{"role": "user", "content": state["input"]}], max_tokens=settings["max_tokens"])
        return {"answer": out.text, "sources": [h["uid"] for h in state["hits"]]}

    def describe(state: State) -> State:
        return {"answer": describer.chat([{"role": "user", "content": state["input"]}]).text}

    g = StateGraph(State)
    for name, fn in (
        ("classify", classify),
        ("retrieve", retrieve),
        ("answer", answer),
        ("describe", describe),
    ):
        g.add_node(name, fn)
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", lambda s: "retrieve" if s["route"] == "answer" else "describe")
    g.add_edge("retrieve", "answer")
    g.add_edge("answer", END)
    g.add_edge("describe", END)
    return g.compile()


def make() -> tuple[GraphResponder, ScriptedBackend, ScriptedBackend]:
    describer = ScriptedBackend("d", "A soft pink tutu for little dancers.")
    qa = ScriptedBackend("q", "It has three layers of tulle.")
    responder = GraphResponder(
        build_graph,
        classifier=QuestionMarkClassifier(),
        store=HITS,
        embedder=None,
        describer=describer,
        qa=qa,
        settings={"max_tokens": 64},
    )
    return responder, describer, qa


def test_respond_maps_the_graph_state() -> None:
    responder, _, qa = make()
    result = responder.respond("How many layers?", 60, "prodtune-router", max_tokens=32, temperature=0.3)
    assert result.route == "answer" and result.reason == "test classifier"
    assert result.answer == "It has three layers of tulle."
    assert [(s.uid, s.score, s.title) for s in result.sources] == [
        ("0000031909", 0.91, "Girls Ballet Tutu Neon Pink"),
        ("B00005N5PF", 0.62, "Pink Tutu Adult"),
    ]
    # the request's limits override the graph's settings; the threshold reached retrieval
    assert qa.calls[-1]["max_tokens"] == 32 and qa.calls[-1]["temperature"] == 0.3
    assert (result.prompt_tokens, result.completion_tokens) == (7, 3)
    high = responder.respond("How many layers?", 80, "prodtune-router", max_tokens=32, temperature=0)
    assert [s.uid for s in high.sources] == ["0000031909"]


def test_stream_tees_backend_tokens_then_yields_the_result() -> None:
    responder, _, qa = make()
    events = list(
        responder.respond_stream("How many layers?", 50, "prodtune-router", max_tokens=16, temperature=0)
    )
    pieces, final = events[:-1], events[-1]
    assert pieces == ["It", " has", " three", " layers", " of", " tulle."]  # trailing space held back
    assert isinstance(final, RouteResult) and final.answer == "It has three layers of tulle."
    assert qa.calls[-1]["stream"] is True and qa.calls[-1]["max_tokens"] == 16
    # after streaming, plain calls do not stream any more
    responder.respond("How many layers?", 50, "prodtune-router", max_tokens=16, temperature=0)
    assert qa.calls[-1]["stream"] is False


def test_forced_routes() -> None:
    responder, describer, _ = make()
    forced_qa = responder.respond("Pink tutu", 50, "prodtune-qa", max_tokens=16, temperature=0)
    assert (forced_qa.route, forced_qa.reason) == ("answer", "forced by model prodtune-qa")
    assert [s.uid for s in forced_qa.sources] == ["0000031909", "B00005N5PF"]
    forced_d = responder.respond("How many layers?", 50, "prodtune-describer", max_tokens=16, temperature=0)
    assert forced_d.route == "describe" and forced_d.answer == describer.reply and forced_d.sources == []
    auto = responder.respond("How many layers?", None, "prodtune-router", max_tokens=16, temperature=0)
    assert auto.route == "answer" and auto.reason == "test classifier"  # forcing does not stick
    assert auto.threshold == 50.0  # no threshold asked: the graph's default, reported back


def test_api_over_the_graph_streams() -> None:
    responder, _, _ = make()
    app = create_app(responder, settings=ApiSettings(key=SecretStr("k")))
    c = TestClient(app)
    payload = {
        "model": "prodtune-router",
        "messages": [{"role": "user", "content": "Layers?"}],
        "stream": True,
    }
    with c.stream("POST", "/v1/chat/completions", json=payload, headers={"Authorization": "Bearer k"}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert '"uid": "0000031909"' in lines[-2]
    assert c.get("/readyz").status_code == 200


def test_result_from_state_tolerates_objects_and_unknown_sources() -> None:
    class Hit:
        def __init__(self, uid: str, score: float) -> None:
            self.uid, self.score, self.title, self.content = uid, score, f"t{uid}", ""

    state = {
        "route": "answer",
        "confidence": 0.5,
        "hits": [Hit("a", 0.4)],
        "answer": " x ",
        "sources": ["a", "zz"],
    }
    result = result_from_state(state)
    assert result.answer == "x"
    assert [(s.uid, s.title, s.score) for s in result.sources] == [("a", "ta", 0.4), ("zz", "", 0.0)]
