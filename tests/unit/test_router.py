"""Router classifier: accuracy on the held-out labelled set, explanations, the LLM fallback, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from components.common.errors import InputError
from serving.llm.base import ChatResult
from serving.router.classifier import DEFAULT_TRAIN_PATH, RouterClassifier
from serving.router.examples import load_examples, normalise
from serving.router.features import strip_imperative

EVAL_PATH = Path(__file__).resolve().parents[1] / "data" / "router_labelled.jsonl"


@pytest.fixture(scope="module")
def classifier() -> RouterClassifier:
    return RouterClassifier.from_path(DEFAULT_TRAIN_PATH)


@pytest.fixture(scope="module")
def eval_set():
    return load_examples(EVAL_PATH)


def test_eval_set_is_large_varied_and_bilingual(eval_set):
    assert len(eval_set) >= 200
    langs = Counter(e.lang for e in eval_set)
    assert langs["pt"] >= 60 and langs["en"] >= 60
    kinds = Counter(e.kind for e in eval_set)
    for kind in ("title", "title_size_model", "book_title_q", "question", "question_no_qmark", "imperative"):
        assert kinds[kind] >= 10, kind
    # Titles that end in "?" are the trap: there must be enough of them, labelled describe.
    qmark_titles = [e for e in eval_set if e.kind == "book_title_q" and e.text.rstrip().endswith("?")]
    assert len(qmark_titles) >= 8 and all(e.route == "describe" for e in qmark_titles)
    assert sum(1 for e in eval_set if e.route == "answer" and not e.text.rstrip().endswith("?")) >= 40


def test_training_and_evaluation_sets_do_not_overlap(eval_set):
    train = {normalise(e.text) for e in load_examples(DEFAULT_TRAIN_PATH)}
    shared = sorted(normalise(e.text) for e in eval_set if normalise(e.text) in train)
    assert shared == []
    assert len({normalise(e.text) for e in eval_set}) == len(eval_set), "duplicates inside the eval set"


def test_accuracy_on_held_out_labelled_set_is_at_least_97_percent(classifier, eval_set):
    wrong = [(e.text, e.route) for e in eval_set if classifier.classify(e.text).route != e.route]
    accuracy = 1 - len(wrong) / len(eval_set)
    assert accuracy >= 0.97, f"accuracy {accuracy:.3f}; wrong: {wrong}"


@pytest.mark.parametrize("lang", ["en", "pt"])
def test_accuracy_holds_per_language(classifier, eval_set, lang):
    subset = [e for e in eval_set if e.lang == lang]
    right = sum(classifier.classify(e.text).route == e.route for e in subset)
    assert right / len(subset) >= 0.95


@pytest.mark.parametrize(
    ("text", "route"),
    [
        ("Who Moved My Cheese?", "describe"),
        ("who moved my cheese", "answer"),  # typed as a sentence, lower case: somebody asking
        ("qual a voltagem da air fryer", "answer"),
        ("Fritadeira Air Fryer Mondial 4L 1500W", "describe"),
        ("descreva a Air Fryer Mondial", "describe"),
        ("Help Me Be Good: Lying (Paperback)", "describe"),
    ],
)
def test_tricky_inputs(classifier, text, route):
    assert classifier.classify(text).route == route


def test_reason_names_the_deciding_signals(classifier):
    d = classifier.classify("does the Lodge skillet work on induction")
    assert d.route == "answer"
    assert "starts_with_question_word" in d.reason
    d = classifier.classify("tell me about the Instant Pot Duo 7-in-1")
    assert (d.route, d.source) == ("describe", "rule")
    assert "imperative_describe ('tell me about')" in d.reason
    assert d.as_dict().keys() == {"route", "confidence", "reason"}


def test_training_is_deterministic():
    a = RouterClassifier.from_path(DEFAULT_TRAIN_PATH)
    b = RouterClassifier.from_path(DEFAULT_TRAIN_PATH)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_empty_input_is_an_input_error(classifier):
    with pytest.raises(InputError, match="empty input"):
        classifier.classify("   ")


def test_strip_imperative_leaves_the_title():
    assert strip_imperative("Describe this product: Lodge Cast Iron Skillet") == "Lodge Cast Iron Skillet"
    assert strip_imperative("fale sobre o Kindle 11ª geração") == "Kindle 11ª geração"
    assert strip_imperative("Girls Ballet Tutu") == "Girls Ballet Tutu"


class RecordingBackend:
    """A ChatBackend that replies with a fixed text and records the messages it got."""

    def __init__(self, reply: str | Exception, model: str = "fake-router") -> None:
        self.reply = reply
        self.model = model
        self.calls: list[list[dict[str, str]]] = []

    def chat(self, messages, *, max_tokens=256, temperature=0.0) -> ChatResult:
        self.calls.append(messages)
        if isinstance(self.reply, Exception):
            raise self.reply
        return ChatResult(text=self.reply, model=self.model)

    def stream(self, messages, *, max_tokens=256, temperature=0.0) -> Iterator[str]:
        yield self.chat(messages).text


def _with_fallback(classifier: RouterClassifier, backend, threshold: float) -> RouterClassifier:
    return RouterClassifier(
        classifier.weights, classifier.bias, fallback=backend, fallback_threshold=threshold
    )


def test_llm_fallback_is_not_called_when_confident(classifier):
    backend = RecordingBackend("answer")
    d = _with_fallback(classifier, backend, 0.7).classify("Girls Ballet Tutu Neon Pink")
    assert d.route == "describe" and backend.calls == []


def test_llm_fallback_decides_below_threshold(classifier):
    backend = RecordingBackend(" Answer.")
    # A threshold above any confidence forces the fallback for an input the head calls "describe".
    d = _with_fallback(classifier, backend, 1.01).classify("Girls Ballet Tutu Neon Pink")
    assert (d.route, d.source) == ("answer", "llm")
    assert "LLM fake-router chose answer" in d.reason
    assert d.confidence < 0.5  # the head favoured describe: the LLM overruled it
    assert backend.calls[0][-1] == {"role": "user", "content": "Girls Ballet Tutu Neon Pink"}


@pytest.mark.parametrize("reply", ["maybe", "describe or answer", RuntimeError("connection refused")])
def test_unusable_llm_reply_keeps_the_heads_guess(classifier, reply):
    d = _with_fallback(classifier, RecordingBackend(reply), 1.01).classify("Girls Ballet Tutu Neon Pink")
    assert (d.route, d.source) == ("describe", "classifier")
    assert "best guess" in d.reason


def test_no_fallback_configured_says_best_guess(classifier):
    d = _with_fallback(classifier, None, 1.01).classify("Girls Ballet Tutu Neon Pink")
    assert d.route == "describe" and "no LLM fallback configured: best guess" in d.reason


def test_bad_labelled_file_points_at_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "route": "describe"}\n{"text": "b", "route": "maybe"}\n', encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_examples(path)
    assert exc.value.line == 2 and exc.value.field == "route"


def test_cli_route_prints_exactly_one_json_object():
    from pipelines.commands import route

    app = typer.Typer()
    route.register(app)
    result = CliRunner().invoke(app, ["route", "Qual a voltagem da cafeteira Oster?"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["route"] == "answer"
    assert 0.5 <= obj["confidence"] <= 1.0
    assert isinstance(obj["reason"], str) and obj["reason"]
