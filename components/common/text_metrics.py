"""Text metrics shared by the fine-tune evaluation and the export promotion gate (one owner).

- `rouge_l`: ROUGE-L F1 on lowercased word tokens (longest common subsequence).
- `facts_recall` (describer): share of the reference's salient tokens found in the output. Salient =
  tokens with a digit (`12`, `3-layer`, `100ml`), unit words right after a number (`12 inches`), and
  capitalised or mixed-case words that do not start a sentence (brands, models: `Sony`, `iPhone`, `USB`).
  None when the reference has no salient token.
- `token_f1` (QA): SQuAD-style bag-of-words F1 vs the reference (lowercase, no punctuation/articles).
"""

from __future__ import annotations

import re
import string
from collections import Counter

_WORD = re.compile(r"\w+", re.UNICODE)
_RAW_TOKEN = re.compile(r"[\w][\w.\-/]*[\w]|[\w]", re.UNICODE)
_UNIT_WORDS = (
    "mm cm m km in inch inches ft feet foot yd oz lb lbs g kg mg ml l liter liters litre gallon gallons "
    "w watt watts kw v volt volts mah ah hz khz mhz ghz gb tb mb kb mp pack pcs pieces piece count ct x"
)
UNITS = frozenset(_UNIT_WORDS.split())
_SENTENCE_END = (".", "!", "?", ":", ";")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    p, r = words(prediction), words(reference)
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def salient_facts(reference: str) -> set[str]:
    """Lowercased salient tokens of a reference description (see module docstring)."""
    facts: set[str] = set()
    tokens = [(m.group(0), m.start()) for m in _RAW_TOKEN.finditer(reference)]
    prev_text = ""
    for i, (tok, start) in enumerate(tokens):
        before = reference[:start].rstrip()
        sentence_start = not before or before.endswith(_SENTENCE_END) or before.endswith("\n")
        has_digit = any(ch.isdigit() for ch in tok)
        mixed_case = any(ch.isupper() for ch in tok[1:])
        capitalised = tok[0].isupper() and not sentence_start
        after_number = i > 0 and any(ch.isdigit() for ch in prev_text) and tok.lower() in UNITS
        if has_digit or mixed_case or capitalised or after_number:
            facts.update(words(tok))
        prev_text = tok
    return facts


def facts_recall(prediction: str, reference: str) -> float | None:
    facts = salient_facts(reference)
    if not facts:
        return None
    found = set(words(prediction))
    return len(facts & found) / len(facts)


def _normalize_answer(text: str) -> list[str]:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    p, r = _normalize_answer(prediction), _normalize_answer(reference)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)
