"""Route classifier: named rules plus a small logistic head, with an optional LLM fallback.

`RouterClassifier.classify(text)` returns a `RouteDecision` with the route (`describe`: the input is
a product title or asks for a description; `answer`: a question or request answered from the
catalogue), a confidence in [0.5, 1] and a reason naming the signals that decided it. The head is a
logistic regression in numpy over the rule signals and hashed n-grams, trained from labelled
examples in the repo (`train_examples.jsonl`, never the evaluation set in `tests/data/`). Below
`fallback_threshold` an injected `ChatBackend` decides; without one, the head's guess stands and the
reason says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from components.common.errors import InputError
from serving.llm.base import ChatBackend
from serving.router.examples import Example, load_examples
from serving.router.features import N_HASH, RULE_NAMES, featurize, imperative_rule

log = logging.getLogger(__name__)

ROUTE_NAMES = ("describe", "answer")
# An explicit imperative is the user's own statement of intent: it decides before the head does.
RULE_CONFIDENCE = 0.97
DEFAULT_TRAIN_PATH = Path(__file__).with_name("train_examples.jsonl")

_FALLBACK_SYSTEM = (
    "You route messages for an online store assistant. Reply with exactly one word: 'describe' if the "
    "message is a product title or asks for a product description, 'answer' if it is a question or a "
    "request about products."
)


@dataclass(frozen=True)
class RouteDecision:
    route: str
    confidence: float
    reason: str
    source: str = "classifier"  # "rule", "classifier" or "llm"

    def as_dict(self) -> dict[str, object]:
        return {"route": self.route, "confidence": round(self.confidence, 4), "reason": self.reason}


def _design_matrix(texts: list[str]) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    n_rules = len(RULE_NAMES)
    for i, text in enumerate(texts):
        rules, idx, ngram_vals = featurize(text)
        nz = np.flatnonzero(rules)
        rows.extend([i] * (len(nz) + len(idx)))
        cols.extend(nz.tolist() + (idx + n_rules).tolist())
        vals.extend(rules[nz].tolist() + ngram_vals.tolist())
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), n_rules + N_HASH), dtype=np.float64)


def train_logistic(
    x: sparse.csr_matrix, y: np.ndarray, *, l2: float = 1e-3, epochs: int = 2000, lr: float = 1.0
) -> tuple[np.ndarray, float]:
    """Full-batch gradient descent on the L2-regularised log loss; deterministic (zero init)."""
    n, d = x.shape
    w = np.zeros(d, dtype=np.float64)
    b = 0.0
    xt = x.T.tocsr()
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        err = p - y
        w -= lr * (xt @ err / n + l2 * w)
        b -= lr * float(err.mean())
    return w.astype(np.float32), b


class RouterClassifier:
    """P(answer) = sigmoid(w . features + b); the first len(RULE_NAMES) weights belong to the rules."""

    def __init__(
        self,
        weights: np.ndarray,
        bias: float,
        *,
        fallback: ChatBackend | None = None,
        fallback_threshold: float = 0.7,
    ) -> None:
        self.weights = weights
        self.bias = bias
        self.fallback = fallback
        self.fallback_threshold = fallback_threshold

    @classmethod
    def train(cls, examples: list[Example], **kwargs: object) -> RouterClassifier:
        x = _design_matrix([e.text for e in examples])
        y = np.array([e.route == "answer" for e in examples], dtype=np.float64)
        w, b = train_logistic(x, y)
        return cls(w, b, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_path(cls, path: str | Path = DEFAULT_TRAIN_PATH, **kwargs: object) -> RouterClassifier:
        return cls.train(load_examples(path), **kwargs)

    def rule_weights(self) -> dict[str, float]:
        return {name: float(self.weights[i]) for i, name in enumerate(RULE_NAMES)}

    def head(self, text: str) -> tuple[float, str]:
        """P(answer) and a reason naming the strongest signals."""
        rules, idx, vals = featurize(text)
        n_rules = len(RULE_NAMES)
        rule_contrib = rules * self.weights[:n_rules]
        ngram_contrib = float(vals @ self.weights[n_rules + idx])
        logit = float(rule_contrib.sum()) + ngram_contrib + self.bias
        p_answer = 1.0 / (1.0 + np.exp(-logit))
        signals = [(RULE_NAMES[i], float(rule_contrib[i])) for i in np.flatnonzero(rules)]
        signals.append(("text n-grams", ngram_contrib))
        signals.sort(key=lambda s: -abs(s[1]))
        # Positive pushes towards "answer", negative towards "describe".
        parts = [f"{name} {val:+.2f}" for name, val in signals[:4] if abs(val) >= 0.05]
        toward = "answer" if p_answer >= 0.5 else "describe"
        reason = f"{toward}: " + (", ".join(parts) if parts else "no strong signal")
        return float(p_answer), reason

    def classify(self, text: str) -> RouteDecision:
        decision = self._decide(text)
        log.info(
            "route=%s confidence=%.3f source=%s reason=%s",
            decision.route,
            decision.confidence,
            decision.source,
            decision.reason,
        )
        return decision

    def _decide(self, text: str) -> RouteDecision:
        if not text.strip():
            raise InputError("empty input: nothing to route", field="text")
        rule = imperative_rule(text)
        if rule is not None:
            route, why = rule
            return RouteDecision(route, RULE_CONFIDENCE, why, source="rule")
        p_answer, reason = self.head(text)
        route = "answer" if p_answer >= 0.5 else "describe"
        confidence = max(p_answer, 1.0 - p_answer)
        if confidence >= self.fallback_threshold:
            decision = RouteDecision(route, confidence, reason)
        elif self.fallback is None:
            decision = RouteDecision(
                route, confidence, f"{reason}; low confidence and no LLM fallback configured: best guess"
            )
        else:
            decision = self._ask_llm(text, p_answer, reason)
        return decision

    def _ask_llm(self, text: str, p_answer: float, reason: str) -> RouteDecision:
        assert self.fallback is not None
        guess = "answer" if p_answer >= 0.5 else "describe"
        confidence = max(p_answer, 1.0 - p_answer)
        messages = [{"role": "system", "content": _FALLBACK_SYSTEM}, {"role": "user", "content": text}]
        try:
            reply = self.fallback.chat(messages, max_tokens=4, temperature=0.0).text.strip().lower()
        except Exception as exc:  # a broken fallback must not break routing: keep the head's guess
            return RouteDecision(guess, confidence, f"{reason}; LLM fallback failed ({exc!r}): best guess")
        words = [w for w in ROUTE_NAMES if w in reply]
        if len(words) != 1:
            return RouteDecision(guess, confidence, f"{reason}; LLM fallback said {reply!r}: best guess")
        chosen = words[0]
        # The confidence reported is the head's probability for the route the LLM chose: it tells
        # how much the LLM had to overrule.
        head_p = p_answer if chosen == "answer" else 1.0 - p_answer
        model = self.fallback.model
        why = f"low confidence ({confidence:.2f}): LLM {model} chose {chosen}; head said {reason}"
        return RouteDecision(chosen, head_p, why, source="llm")
