"""QA contexts built as serving builds them: retrieved products (distractors included), the right one
missing, no product over the threshold, held-out negatives, and the same messages serving sends."""

from __future__ import annotations

import numpy as np
import pytest

from components.common import chat_format
from components.common.retrieval.embedded import EmbeddedStore
from components.synthesis.contexts import (
    NOT_IN_CONTEXT_ANSWER,
    ContextBuilder,
    RetrievalContextConfig,
    held_out,
    retrieved_examples,
)

WORDS = ("tutu", "skillet", "pink", "iron", "book")


class KeywordEmbedder:
    """A vector per keyword count: cosines are known by construction (no model needed)."""

    dim = len(WORDS)

    def encode(self, texts, *, batch_size=64):
        return np.array([[t.lower().count(w) for w in WORDS] for t in texts], dtype=np.float32)


PRODUCTS = [
    ("0001", "Ballet tutu", "A pink tutu. " + "x" * 50),
    ("0002", "Skillet", "Cast iron skillet."),
    ("0003", "Pink skillet", "A pink enamelled iron skillet."),
]


@pytest.fixture()
def store() -> EmbeddedStore:
    s = EmbeddedStore(KeywordEmbedder.dim)
    e = KeywordEmbedder()
    s.add([u for u, _, _ in PRODUCTS], [t for _, t, _ in PRODUCTS], [c for _, _, c in PRODUCTS],
          e.encode([f"{t}. {c}" for _, t, c in PRODUCTS]))  # fmt: skip
    return s


def teacher_example(uid: str, question: str, answer: str, split: str = "train") -> dict:
    title, content = next((t, c) for u, t, c in PRODUCTS if u == uid)
    return {
        "messages": chat_format.qa_messages(question, [(title, content)], answer),
        "uid": uid,
        "split": split,
        "meta": {"task": "qa", "pair": 0},
    }


def builder(store, **overrides) -> ContextBuilder:
    cfg = RetrievalContextConfig(**{"top_k": 2, "threshold": 40, "context_chars": 20, "negative_fraction": 0.0,
                                    **overrides})  # fmt: skip
    return ContextBuilder(store, KeywordEmbedder(), cfg)


def test_each_kind_of_context(store):
    qa = [
        teacher_example("0001", "Is the tutu pink?", "Yes, it is pink."),
        teacher_example("0001", "Does the iron skillet fit?", "It is a tutu."),  # retrieval misses 0001
        teacher_example("0002", "Is it machine washable?", "No."),  # no keyword: nothing passes
    ]
    out, counts = retrieved_examples(qa, builder(store))
    assert counts == {"retrieved": 1, "distractors": 1, "no_match": 1}
    retrieved, distractors, no_match = out
    # retrieved: the hits as serving passes them (best first, top_k, descriptions cut to context_chars)
    assert retrieved["meta"]["context"] == "retrieved" and retrieved["meta"]["sources"] == ["0001", "0003"]
    assert retrieved["messages"] == chat_format.qa_messages(
        "Is the tutu pink?", [("Ballet tutu", "A pink tutu. xxxxxxx"), ("Pink skillet", "A pink enamelled iro")],
        "Yes, it is pink.",
    )  # fmt: skip
    assert distractors["meta"]["context"] == "distractors"
    assert "0001" not in distractors["meta"]["sources"]
    assert distractors["messages"][-1]["content"] == NOT_IN_CONTEXT_ANSWER
    assert no_match["meta"]["sources"] == []
    assert no_match["messages"][1]["content"].startswith("(no matching product found)")
    assert no_match["messages"][-1]["content"] == chat_format.NO_MATCH_ANSWER.format(threshold=40)
    # Portuguese and English, as serving says it
    assert (
        "Nenhum produto" in no_match["messages"][-1]["content"]
        and "No matching" in no_match["messages"][-1]["content"]
    )


def test_held_out_negatives_follow_their_source_example(store):
    qa = [teacher_example("0001", "Is the tutu pink?", "Yes.", split="eval")]
    out, counts = retrieved_examples(qa, builder(store, negative_fraction=1.0))
    assert [e["meta"]["context_origin"] for e in out] == ["teacher", "held_out"]
    assert counts == {"retrieved": 1, "distractors": 1, "no_match": 0}
    negative = out[1]
    assert negative["split"] == "eval" and negative["uid"] == "0001"  # the eval set gets such rows too
    assert negative["meta"]["sources"] == ["0003"]  # the right product is out; top_k still from the rest
    # a threshold no distractor reaches turns the same question into a no-match example
    out, counts = retrieved_examples(qa, builder(store, negative_fraction=1.0, threshold=90))
    assert counts == {"retrieved": 1, "distractors": 0, "no_match": 1}


def test_held_out_choice_is_seeded_and_about_the_fraction():
    picks = [held_out(f"{i:05d}", "q", seed=0, fraction=0.2) for i in range(2000)]
    assert picks == [held_out(f"{i:05d}", "q", seed=0, fraction=0.2) for i in range(2000)]
    assert 0.17 < np.mean(picks) < 0.23
    assert picks != [held_out(f"{i:05d}", "q", seed=1, fraction=0.2) for i in range(2000)]


def test_the_context_is_the_one_serving_sends(store):
    """Serving's graph, with a recording QA model, sends exactly the synthesized user turn."""
    pytest.importorskip("langgraph")
    from serving.config import ServingSettings
    from serving.graph import build_graph
    from serving.llm.base import ChatResult
    from serving.router.classifier import DEFAULT_TRAIN_PATH, RouterClassifier

    class Recording:
        def __init__(self):
            self.calls = []

        def chat(self, messages, *, max_tokens=256, temperature=0.0, **_):
            self.calls.append(messages)
            return ChatResult(text="ok", model="qa")

    question = "Is the pink tutu machine washable?"
    qa_model = Recording()
    settings = ServingSettings(top_k=2, similarity_threshold=50, context_content_chars=20)
    graph = build_graph(RouterClassifier.from_path(DEFAULT_TRAIN_PATH), store, KeywordEmbedder(), Recording(),
                        qa_model, settings)  # fmt: skip
    state = graph.invoke({"input": question})
    assert state["route"] == "answer" and qa_model.calls
    cfg = {"top_k": settings.top_k, "threshold": settings.similarity_threshold,
           "context_chars": settings.context_content_chars}  # fmt: skip
    [example], _ = retrieved_examples([teacher_example("0001", question, "No.")], builder(store, **cfg))
    assert example["messages"][:-1] == qa_model.calls[0]
