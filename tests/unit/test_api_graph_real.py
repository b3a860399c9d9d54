"""GraphResponder and the API over the real serving/graph.py: real router classifier, real embedded
vector store; a hashing embedder and scripted chat backends stand in for the models."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving import graph
from serving.api.app import create_app
from serving.api.responder import GraphResponder, RouteResult
from serving.api.settings import ApiSettings
from serving.config import ServingSettings
from serving.llm.base import ChatResult
from serving.retrieval.embedded import EmbeddedStore
from serving.router.classifier import RouterClassifier

DIM = 256
PRODUCTS = [
    ("0000031909", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu. 12 inches in length."),
    ("B000FQ2JLW", "Stainless Steel Insulated Water Bottle", "Keeps drinks cold for 24 hours."),
    ("B00BXLSPZE", "Kids Ballet Slippers Pink Leather", "Full sole leather ballet shoes for girls."),
]


class ScriptedBackend:
    """A ChatBackend that replies with a fixed text (word by word when streaming) and records calls."""

    def __init__(self, model: str, reply: str) -> None:
        self.model, self.reply = model, reply
        self.calls: list[dict] = []

    def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> ChatResult:
        self.calls.append({"messages": messages, "max_tokens": max_tokens})
        return ChatResult(text=self.reply, model=self.model)

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0):  # type: ignore[no-untyped-def]
        self.calls.append({"messages": messages, "max_tokens": max_tokens})
        for word in self.reply.split(" "):
            yield word + " "


class HashingEmbedder:
    """Bag of hashed words, unit length: similar wording gives a high cosine."""

    dim = DIM

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def parts() -> tuple[GraphResponder, ScriptedBackend, ScriptedBackend]:
    embedder = HashingEmbedder()
    store = EmbeddedStore(DIM)
    uids, titles, contents = zip(*PRODUCTS, strict=True)
    store.add(uids, titles, contents, embedder.encode([f"{t}. {c}" for _, t, c in PRODUCTS]))
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
        responder.respond_stream(
            "How long is the girls ballet tutu?", 20, "prodtune-router", max_tokens=9, temperature=0
        )
    )
    assert events[:6] == ["The", " tutu", " is", " 12", " inches", " long."]  # the model's tokens
    final = events[-1]
    assert isinstance(final, RouteResult) and final.sources[0].uid == "0000031909"
    assert events[6].lstrip().startswith("Sources: [0000031909]")  # the graph's citation follows
    assert "".join(events[:-1]) == final.answer
    no_match = list(
        responder.respond_stream("How long is the tutu?", 99, "prodtune-router", max_tokens=9, temperature=0)
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
