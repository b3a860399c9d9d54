"""GraphResponder and the API over the real serving/graph.py: real router classifier, real embedded
vector store; a hashing embedder and scripted chat backends stand in for the models."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving import graph
from serving.api.app import create_app
from serving.api.responder import GraphResponder, RouteResult, iter_response, result_from_state
from serving.api.settings import ApiSettings
from serving.config import ServingSettings
from serving.router.classifier import RouterClassifier
from tests.fakes.chat_backend import ScriptedBackend
from tests.fakes.retrieval import HashingEmbedder, build_store


@pytest.fixture(scope="module")
def parts() -> tuple[GraphResponder, ScriptedBackend, ScriptedBackend]:
    embedder = HashingEmbedder()
    store = build_store(embedder)
    describer = ScriptedBackend("describer", "A soft neon pink tutu for little dancers.")
    qa = ScriptedBackend("qa", "The tutu is 12 inches long.")
    responder = GraphResponder(
        graph.build_graph,
        classifier=RouterClassifier.from_path(),
        store=store,
        embedder=embedder,
        describer=describer,
        qa=qa,
        settings=ServingSettings(),
    )
    return responder, describer, qa


def test_question_is_answered_from_retrieved_products(parts) -> None:  # type: ignore[no-untyped-def]
    responder, _, qa = parts
    result = responder.respond(
        "How long is the girls ballet tutu?", 20, "prodtune-router", max_tokens=40, temperature=0
    )
    assert result.route == "answer" and result.reason.startswith("answer:")
    assert result.sources[0].uid == "0000031909" and 0.2 <= result.sources[0].score <= 1.0
    assert result.answer.startswith("The tutu is 12 inches long.")
    assert "Girls Ballet Tutu Neon Pink" in qa.calls[-1]["messages"][-1]["content"]  # the context
    assert qa.calls[-1]["max_tokens"] == 40 and result.threshold == 20


def test_title_is_described_and_route_can_be_forced(parts) -> None:  # type: ignore[no-untyped-def]
    responder, describer, _ = parts
    auto = responder.respond(
        "Girls Ballet Tutu Neon Pink", None, "prodtune-router", max_tokens=40, temperature=0
    )
    assert auto.route == "describe" and auto.answer == describer.reply and auto.sources == []
    forced = responder.respond("Girls Ballet Tutu Neon Pink", 20, "prodtune-qa", max_tokens=40, temperature=0)
    assert forced.route == "answer" and forced.reason == "forced by model prodtune-qa"
    assert forced.sources[0].uid == "0000031909"


def test_nothing_above_threshold_means_no_qa_call(parts) -> None:  # type: ignore[no-untyped-def]
    responder, _, qa = parts
    before = len(qa.calls)
    result = responder.respond(
        "How long is the girls ballet tutu?", 99, "prodtune-router", max_tokens=40, temperature=0
    )
    assert result.sources == [] and "99% similarity threshold" in result.answer
    assert len(qa.calls) == before


def test_api_streams_tokens_through_the_real_graph(parts) -> None:  # type: ignore[no-untyped-def]
    responder, _, _ = parts
    events = list(
        iter_response(
            responder,
            "How long is the girls ballet tutu?",
            20,
            "prodtune-router",
            max_tokens=9,
            temperature=0,
        )
    )
    assert events[:6] == ["The", " tutu", " is", " 12", " inches", " long."]  # the model's tokens
    final = events[-1]
    assert isinstance(final, RouteResult) and final.sources[0].uid == "0000031909"
    assert events[6].lstrip().startswith("Sources: [0000031909]")  # the graph's citation follows
    assert "".join(events[:-1]) == final.answer
    no_match = list(
        iter_response(responder, "How long is the tutu?", 99, "prodtune-router", max_tokens=9, temperature=0)
    )
    assert "".join(no_match[:-1]) == no_match[-1].answer and "99% similarity threshold" in no_match[-1].answer

    client = TestClient(create_app(responder, settings=ApiSettings(key=SecretStr("k"))))
    payload = {
        "model": "prodtune-router",
        "messages": [{"role": "user", "content": "How long is the girls ballet tutu?"}],
        "stream": True,
        "prodtune": {"threshold": 20},
    }
    with client.stream(
        "POST", "/v1/chat/completions", json=payload, headers={"Authorization": "Bearer k"}
    ) as r:
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    last = json.loads(data[-2])
    assert last["prodtune"]["route"] == "answer" and last["prodtune"]["sources"][0]["uid"] == "0000031909"
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"graph": True, "store": True}}


def _responder(describer: ScriptedBackend, qa: ScriptedBackend) -> GraphResponder:
    embedder = HashingEmbedder()
    store = build_store(embedder)
    return GraphResponder(
        graph.build_graph,
        classifier=RouterClassifier.from_path(),
        store=store,
        embedder=embedder,
        describer=describer,
        qa=qa,
        settings=ServingSettings(),
    )


def test_concurrent_requests_keep_their_own_settings_and_usage() -> None:
    """Two requests at once through one graph: each backend call sees its own request's limits, a
    forced route does not leak into the other request, and usage/finish_reason are per request."""
    import threading

    describer = ScriptedBackend(
        "d", "A soft pink tutu for dancers.", word_delay_s=0.02, finish_reason="length"
    )
    qa = ScriptedBackend("q", "The tutu is 12 inches long.", word_delay_s=0.02, prompt_tokens=11)
    responder = _responder(describer, qa)
    results: dict[str, RouteResult] = {}

    def ask(name: str, text: str, model: str, max_tokens: int, temperature: float) -> None:
        results[name] = responder.respond(text, 20, model, max_tokens=max_tokens, temperature=temperature)

    threads = [
        threading.Thread(target=ask, args=("forced", "How long is the tutu?", "prodtune-describer", 17, 0.5)),
        threading.Thread(
            target=ask, args=("auto", "How long is the girls ballet tutu?", "prodtune-router", 33, 0.0)
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["forced"].route == "describe" and results["auto"].route == "answer"
    assert [(c["max_tokens"], c["temperature"]) for c in describer.calls] == [(17, 0.5)]
    assert [(c["max_tokens"], c["temperature"]) for c in qa.calls] == [(33, 0.0)]
    assert results["forced"].finish_reason == "length" and results["auto"].finish_reason == "stop"
    assert (results["auto"].prompt_tokens, results["auto"].completion_tokens) == (11, 3)


def test_closing_a_stream_cancels_its_generation() -> None:
    qa = ScriptedBackend("q", " ".join(["word"] * 200), word_delay_s=0.01)
    responder = _responder(ScriptedBackend("d", "x"), qa)
    events = iter_response(
        responder, "How long is the girls ballet tutu?", 20, "prodtune-router", max_tokens=9, temperature=0
    )
    assert next(events) == "word"
    events.close()  # the client went away
    assert qa.words_generated < 50  # generation stopped early, not after all 200 words


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
    assert result.answer == "x" and result.finish_reason == "stop" and result.prompt_tokens == 0
    assert [(s.uid, s.title, s.score) for s in result.sources] == [("a", "ta", 0.4), ("zz", "", 0.0)]
