"""Cheap, explainable quality filter for generated Q&A pairs.

A pair is kept only if its answer is supported by the product text. "Supported" is lexical, so a
reviewer can see why a pair was dropped:
- every number in the answer must appear in the title or description (`unsupported_number`);
- at least `min_support` of the answer's content words (stopwords removed, accents folded, words
  matched on a 5-letter prefix so "layers" matches "layer") must appear there (`unsupported_answer`);
- an answer needs at least `min_answer_words` content words (`answer_too_short`);
- a question must end with "?" (`not_a_question`) and, if it names anything (content words), name
  something the text mentions (`off_topic_question`); generic ones ("What is it?") pass;
- a question repeated within a product (`duplicate_question`) or a pair repeated across products
  (`duplicate_pair`) is dropped.
Lexical overlap misses paraphrase, so it errs towards dropping; the threshold is in the config.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Small stopword lists for the catalogue's main languages: function words carry no facts.
_STOPWORDS_TEXT = """
    a an the and or but if of to in on at by for with from into onto about as is are was were be been
    being it its this that these those there their they them he she his her you your we our i me my
    do does did can could will would should may might must has have had not no yes so than then too
    very also just only any all each some such what which who whom whose when where why how product
    item use used using includes include made one most more many much best other others well like get
    o os um uma uns umas de do da dos das em no na nos nas por para com sem que e ou se é são ser foi
    este esta isso isto esse essa ele ela eles elas seu sua seus suas produto pode como mais muito
    el la los las un una unos unas del al en por para con sin que y o es son ser este esta eso su sus
    le les des du et est une pour avec sans dans sur der die das und ist mit für ein eine von zu
    """

# Words of generic customer questions ("How does it work?", "What size is it?"): a question made
# only of these is about the product in hand, even if the description never uses the word.
_GENERIC_TEXT = """
    work works fit fits wash washed clean size sizes big long wide heavy weight material materials
    colour color colours colors come comes included contain contains need needs compatible care purpose
    funciona tamanho tamano cor cores lavar usar serve materiais
    """
GENERIC_QUESTION_WORDS = frozenset(_GENERIC_TEXT.split())

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
PREFIX = 5


def _fold(text: str) -> str:
    if text.isascii():  # the common case; NFKD would change nothing
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


STOPWORDS = frozenset(_fold(w) for w in _STOPWORDS_TEXT.split())


def content_words(text: str) -> list[str]:
    # single letters are possessive "s", list labels and the like, not facts
    return [w for w in _WORD.findall(_fold(text)) if len(w) > 1 and w not in STOPWORDS and not w.isdigit()]


def _key(word: str) -> str:
    return word[:PREFIX]


def numbers(text: str) -> set[str]:
    return {n.replace(",", ".") for n in _NUMBER.findall(text)}


def normalize_question(text: str) -> str:
    return " ".join(_WORD.findall(_fold(text)))


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None  # None when kept
    support: float  # share of the answer's content words found in the source
    detail: str = ""


class Grounding:
    """Scores answers against one product's title and description."""

    def __init__(self, title: str, content: str, *, min_support: float, min_answer_words: int) -> None:
        source = f"{title}\n{content}"
        self.keys = {_key(w) for w in content_words(source)}
        self.numbers = numbers(source)
        self.min_support = min_support
        self.min_answer_words = min_answer_words

    def check(self, answer: str) -> Verdict:
        words = content_words(answer)
        found = [w for w in words if _key(w) in self.keys]
        support = len(found) / len(words) if words else 0.0
        missing_numbers = sorted(numbers(answer) - self.numbers)
        if missing_numbers:
            return Verdict(False, "unsupported_number", support, f"not in text: {', '.join(missing_numbers)}")
        if len(words) < self.min_answer_words:
            return Verdict(False, "answer_too_short", support, f"{len(words)} content word(s)")
        if support < self.min_support:
            missing = sorted({w for w in words if _key(w) not in self.keys})[:8]
            return Verdict(False, "unsupported_answer", support, f"not in text: {', '.join(missing)}")
        return Verdict(True, None, support)

    def check_question(self, question: str) -> Verdict | None:
        """None if the question is acceptable, else why not (small models emit titles or trivia)."""
        if not question.rstrip().endswith("?"):
            return Verdict(False, "not_a_question", 0.0, "does not end with '?'")
        words = [w for w in content_words(question) if w not in GENERIC_QUESTION_WORDS]
        if words and not any(_key(w) in self.keys for w in words):
            return Verdict(
                False, "off_topic_question", 0.0, f"not in text: {', '.join(sorted(set(words))[:8])}"
            )
        return None


class Deduplicator:
    """Remembers questions per product and (question, answer) pairs across the whole run."""

    def __init__(self) -> None:
        self._pairs: set[tuple[str, str]] = set()

    def check(self, seen_questions: set[str], question: str, answer: str) -> str | None:
        q = normalize_question(question)
        pair = (q, normalize_question(answer))
        if q in seen_questions:
            return "duplicate_question"
        if pair in self._pairs:
            return "duplicate_pair"
        seen_questions.add(q)
        self._pairs.add(pair)
        return None
