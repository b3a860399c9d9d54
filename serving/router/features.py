"""Explainable features of a router input: named rule signals plus hashed character n-grams.

The rules encode what we know about the two kinds of input (product titles vs questions/requests, in
Portuguese and English); the n-grams let a small logistic head pick up what the rules miss. Every
rule feature has a name so a route's reason can say which signals decided it.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib

import numpy as np

# English and Portuguese words that open a question, with or without a final "?".
_Q_START = {
    # en
    "what", "what's", "whats", "which", "how", "who", "who's", "whose", "where", "where's", "when",
    "why", "is", "are", "does", "do", "did", "can", "could", "will", "would", "should", "has", "have",
    "any", "was", "were", "isn't", "doesn't", "don't", "can't", "won't", "am", "may", "might",
    # pt (accents are stripped before matching)
    "qual", "quais", "quanto", "quanta", "quantos", "quantas", "como", "onde", "quando", "quem",
    "porque", "posso", "pode", "podem", "serve", "servem", "funciona", "funcionam", "tem", "existe",
    "existem", "ha", "vale", "e", "da", "esse", "essa", "este", "esta", "isso", "voces", "voce",
    "alguem", "cabe", "aguenta", "precisa", "consigo", "sera",
}  # fmt: skip
# Multi-word question openers (accent-free, lower case).
_Q_START_PHRASES = ("por que", "o que", "pra que", "para que", "sera que", "a que", "is it", "is there")
# Phrases anywhere in the text that mark a question or a personal need rather than a title.
_Q_PHRASES = (
    "is it", "can i", "does it", "do you", "will it", "would it", "i need", "i want", "i wonder",
    "looking for", "searching for", "any suggestion", "any recommendation", "how much", "how many",
    "how long", "should i", "is there", "are there", "gostaria de saber", "queria saber", "preciso de",
    "estou procurando", "estou buscando", "alguma sugestao", "tem algum", "tem alguma", "da pra",
    "da para", "e possivel", "vale a pena", "quanto custa", "quanto tempo", "me diga", "quero saber",
    "voces tem", "voces vendem", "procuro", "queria um", "queria uma", "what about",
)  # fmt: skip
# Openers that ask for a description of a product: the describer's job.
_DESCRIBE_START = re.compile(
    r"^(please |por favor )?("
    r"describe|description|descri[bp]e|write (a |an )?(short |product )*description|"
    r"(give|generate|create|make) (me )?(a |an )?(short |product )*description|product description|"
    r"tell me (more )?about|talk about|what can you tell me about|"
    r"descreva|descrever|descricao|fale|fala|fale-me|me fale|conte|conte-me|me conte|"
    r"escreva (uma )?descricao|gere (uma |a )?descricao|crie (uma )?descricao|faca (uma |a )?descricao"
    r")\b"
)
# Openers that ask the assistant to search, compare or recommend: answered from the catalogue.
_REQUEST_START = re.compile(
    r"^(please |por favor )?("
    r"recommend|find|compare|suggest|show|list|help me|explain|check|search|look for|i'm looking|"
    r"recomende|recomenda|me indique|me indica|indique|compare|sugira|me mostre|me mostra|mostre|"
    r"procure|procuro|me ajude|me ajuda|quero|explique|verifique|busque|liste"
    r")\b"
)
# Numbers with units, sizes, counts and packs: typical of catalogue titles.
_SIZE = re.compile(
    r"(\d+([.,]\d+)?\s*(-|\s)?(inch|inches|in|\"|''|cm|mm|m|ml|l|lt|litros?|oz|gb|tb|mb|w|v|kg|g|lb|lbs|"
    r"ft|qt|quart|gallon|pack|count|ct|pcs|pieces|pecas|pares|mah|ghz|hz|dpi|fios|k)\b)|"
    r"(\d+\s*x\s*\d+)|(\b(pack|set|kit|pacote|box|jogo) (of|com|de)\s*\d+)|(\b\d+[- ](piece|pack|pecas)\b)|"
    r"(\b\d+/\d+\b)"
)
# Tokens that mix letters and digits (model numbers: XB-200, CPT-122, M185, SDCS2/64GB).
_MODEL = re.compile(r"\b(?=[a-z0-9/-]*\d)(?=[0-9/-]*[a-z])[a-z0-9][a-z0-9/-]{2,}\b")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
# Verbs that, inside a sentence, make it a question about a product ("a escova é bivolt",
# "o tênis serve para corrida"): matched on the lower-cased text with accents kept.
_Q_VERBS_INSIDE = re.compile(
    r"\s(é|funciona|funcionam|serve|servem|cabe|cabem|aguenta|vem|vêm|dura|pode|posso|precisa|"
    r"fica|mantém|tem|têm|does|do|is|are|will|can|fits?|works?)\s"
)
# Personal pronouns point at a person talking, not at a catalogue entry.
_PRONOUNS = {"i", "my", "me", "you", "your", "eu", "meu", "minha", "voce", "voces", "mim", "nosso", "nossa"}
# Small words that stay lower case inside English and Portuguese Title Case.
_MINOR = {
    "a", "an", "the", "and", "or", "of", "for", "to", "in", "on", "with", "by", "at", "from", "as",
    "de", "do", "da", "dos", "das", "e", "o", "os", "com", "para", "sem", "em", "no", "na", "um",
    "uma", "x", "é", "à", "ao", "aos",
}  # fmt: skip

RULE_NAMES = (
    "ends_with_question_mark",
    "starts_with_question_word",
    "question_phrase",
    "imperative_describe",
    "imperative_request",
    "title_case",
    "all_title_case",
    "title_case_question",
    "lowercase_words",
    "no_question_cue",
    "size_or_unit",
    "model_number",
    "comma_or_dash_segments",
    "personal_pronoun",
    "question_verb_inside",
    "subtitle_after_question_mark",
    "ends_with_bracket",
    "short_input",
    "long_input",
)
N_HASH = 2**14


def fold(text: str) -> str:
    """Lower case without accents, so 'Você' and 'voce' match the same rules."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _title_case_ratio(words: list[str]) -> float:
    content = [w for w in words if w.isalpha() and w.casefold() not in _MINOR]
    if not content:
        return 0.0
    return sum(1 for w in content if w[0].isupper()) / len(content)


def rule_features(text: str) -> np.ndarray:
    """The named rule signals, in RULE_NAMES order, each in [0, 1]."""
    stripped = text.strip()
    low = fold(stripped)
    words = _WORD.findall(stripped)
    low_words = [fold(w) for w in words]
    first = low_words[0] if low_words else ""
    # The first word of a sentence is capitalised anyway: judge Title Case on the rest.
    rest = [w for w in words[1:] if w.isalpha() and w.casefold() not in _MINOR]
    title_case = _title_case_ratio(words[1:]) if len(rest) >= 2 else 0.0
    lowercase = sum(1 for w in rest if w[0].islower()) / len(rest) if rest else 0.0
    qmark = stripped.endswith("?")
    qword = first in _Q_START or low.startswith(_Q_START_PHRASES)
    qphrase = any(f" {p} " in f" {low} " for p in _Q_PHRASES)
    describe = bool(_DESCRIBE_START.match(low))
    request = bool(_REQUEST_START.match(low))
    pronoun = any(w in _PRONOUNS for w in low_words)
    all_title = title_case >= 0.99
    qverb = bool(_Q_VERBS_INSIDE.search(f" {stripped.casefold()} ")) and not all_title
    return np.array(
        [
            qmark,
            qword,
            qphrase,
            describe,
            request,
            title_case,
            all_title,
            # Book titles ask questions in Title Case ("Who Moved My Cheese?"); people rarely type so.
            all_title and (qword or qmark),
            lowercase,
            not (qmark or qword or qphrase or request or pronoun or describe or qverb),
            bool(_SIZE.search(low)),
            bool(_MODEL.search(low)),
            ("," in stripped) or (" - " in stripped) or ("|" in stripped),
            pronoun,
            qverb,
            bool(re.search(r"\?\s*[:(]|\?\s+\S", stripped)),
            stripped.endswith((")", "]")),
            len(words) <= 3,
            len(words) >= 12,
        ],
        dtype=np.float32,
    )


def imperative_rule(text: str) -> tuple[str, str] | None:
    """(route, reason) when the input opens with an explicit imperative, else None.

    "describe/descreva/fale sobre/tell me about ..." asks for the describer; "recommend/compare/
    procure/me indique ..." asks for an answer from the catalogue. A title written in Title Case that
    happens to open with such a verb ("Help Me Be Good", "Show Me Love") is left to the head.
    """
    stripped = text.strip()
    low = fold(stripped)
    words = _WORD.findall(stripped)
    rest = [w for w in words[1:] if w.isalpha() and w.casefold() not in _MINOR]
    all_title = len(rest) >= 2 and _title_case_ratio(words[1:]) >= 0.99
    m = _DESCRIBE_START.match(low)
    if m and not (all_title and words[0][:1].isupper()):
        return "describe", f"describe: rule imperative_describe ('{m.group(0).strip()}')"
    m = _REQUEST_START.match(low)
    if m and not (all_title and words[0][:1].isupper()):
        return "answer", f"answer: rule imperative_request ('{m.group(0).strip()}')"
    return None


_LEAD = re.compile(
    r"^(?:[\s:,-]+|(?:(?:the|this|a|an|o|os|as|este|esta|esse|essa|"
    r"product|produto|item|da|do|de|of|for|para|sobre|me)\b[\s:,-]*))+",
    re.IGNORECASE,
)


def strip_imperative(text: str) -> str:
    """'describe the Sony WH-1000XM4' -> 'Sony WH-1000XM4': the describer was trained on bare titles."""
    stripped = text.strip()
    low = fold(stripped)
    m = _DESCRIBE_START.match(low)
    if not m or len(low) != len(stripped):  # offsets only carry over when folding kept the length
        return stripped
    rest = _LEAD.sub("", stripped[m.end() :]).strip()
    return rest or stripped


def _hash(token: str) -> int:
    # crc32, not hash(): Python's string hash changes from one process to the next.
    return zlib.crc32(token.encode("utf-8")) % N_HASH


def ngram_features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Hashed word unigrams, word bigrams and character 3-5-grams: (indices, L2-normalised counts)."""
    low = fold(text.strip())
    words = _WORD.findall(low)
    tokens = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    if words:
        tokens.append(f"first:{words[0]}")
        tokens.append(f"last:{words[-1]}")
    padded = f" {low} "
    for n in (3, 4, 5):
        tokens.extend(f"c:{padded[i : i + n]}" for i in range(len(padded) - n + 1))
    idx, counts = np.unique(np.array([_hash(t) for t in tokens], dtype=np.int64), return_counts=True)
    vals = counts.astype(np.float32)
    norm = float(np.linalg.norm(vals))
    return idx, (vals / norm if norm else vals)


def featurize(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rule signals, n-gram indices, n-gram values): a sparse row of len(RULE_NAMES) + N_HASH columns."""
    idx, vals = ngram_features(text)
    return rule_features(text), idx, vals
