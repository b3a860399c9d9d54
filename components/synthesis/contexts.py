"""QA examples whose context is built exactly as serving builds it (issue 12, item 7).

Serving embeds the question, keeps the top `top_k` products at or above the similarity threshold,
cuts each description to `context_chars` and renders them with `chat_format.qa_messages`; when no
product passes, it answers `chat_format.NO_MATCH_ANSWER` without calling the model. Training on one
correct product with its full description (the old layout) teaches the model a context it never
sees. So, for every teacher pair (question, answer, product), `retrieved_examples` searches the
catalogue index for the question and writes the example with what serving would pass:

- `retrieved`: the right product is among the hits: the context is the hits (distractors included),
  the answer is the teacher's;
- `distractors`: hits pass the threshold but the right product is not among them: the answer says
  the products given do not answer it (NOT_IN_CONTEXT_ANSWER, English and Portuguese);
- `no_match`: nothing passes the threshold: empty context, the answer is NO_MATCH_ANSWER.

Besides, a seeded `negative_fraction` of pairs is asked with the right product held out of the
index (as for a product the catalogue lacks), which adds `distractors` / `no_match` examples for
the same question. The eval split gets the same treatment, so the eval set holds such rows.
Every example's `meta.context` says which kind it is; the counts go into the synthesis summary.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from components.common import chat_format
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.retrieval.base import (
    CONTEXT_CHARS,
    THRESHOLD_PERCENT,
    TOP_K,
    Hit,
    context_products,
    threshold_to_min_score,
)

# Said when products passed the threshold but none of them answers: English, then Portuguese, like
# NO_MATCH_ANSWER (the model is trained to say it; serving has no fixed text for this case).
NOT_IN_CONTEXT_ANSWER = (
    "The products found in the catalogue do not contain the answer to this question, so I cannot "
    "answer it from product information.\n"
    "Os produtos encontrados no catálogo não contêm a resposta a esta pergunta, então não posso "
    "respondê-la com informações de produtos."
)
KINDS = ("retrieved", "distractors", "no_match")


class RetrievalContextConfig(StepConfig):
    """How synthesis builds QA contexts; the defaults are serving's (components.common.retrieval)."""

    enabled: bool = True
    store_dir: Path | None = None  # the index step's output; the pipeline passes its artifact
    top_k: int = Field(default=TOP_K, ge=1, le=50)
    threshold: float = Field(default=THRESHOLD_PERCENT, ge=0, le=100)
    context_chars: int = Field(default=CONTEXT_CHARS, ge=0)
    negative_fraction: float = Field(default=0.2, ge=0, le=1)
    seed: int = 0


class Searcher(Protocol):
    def search(self, vector: np.ndarray, k: int = 5, min_score: float = -1.0) -> list[Hit]: ...


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


@dataclass
class ContextBuilder:
    store: Searcher
    embedder: Encoder
    config: RetrievalContextConfig

    def hits(self, vectors: np.ndarray, exclude: set[str] | None = None) -> list[list[Hit]]:
        """Serving's retrieval for each query vector; `exclude` holds uids out of the index (one
        more hit is fetched per excluded uid, so the top k stay k)."""
        cfg, extra = self.config, len(exclude or ())
        min_score = threshold_to_min_score(cfg.threshold)
        out = []
        for v in vectors:
            found = self.store.search(v, k=cfg.top_k + extra, min_score=min_score)
            out.append([h for h in found if h.uid not in (exclude or ())][: cfg.top_k])
        return out

    def example(
        self, question: str, answer: str, uid: str, hits: list[Hit]
    ) -> tuple[str, list[dict[str, str]]]:
        cfg = self.config
        if not hits:
            reply = chat_format.NO_MATCH_ANSWER.format(threshold=cfg.threshold)
            return "no_match", chat_format.qa_messages(question, [], reply)
        context = context_products(hits, cfg.context_chars)
        if any(h.uid == uid for h in hits):
            return "retrieved", chat_format.qa_messages(question, context, answer)
        return "distractors", chat_format.qa_messages(question, context, NOT_IN_CONTEXT_ANSWER)


def held_out(uid: str, question: str, seed: int, fraction: float) -> bool:
    """Seeded, order-independent choice of the pairs asked without their product."""
    digest = hashlib.sha256(f"{seed}:{uid}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _question(example: dict[str, Any]) -> str:
    return example["messages"][1]["content"].rsplit("Question: ", 1)[-1]


def retrieved_examples(
    qa: list[dict[str, Any]], builder: ContextBuilder
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rewrite the QA examples (chat_format layout, one product) with serving's contexts, and add
    the held-out negatives. Returns the new list (input order kept, each negative right after its
    source example) and counts by context kind."""
    cfg = builder.config
    questions = [_question(e) for e in qa]
    vectors = builder.embedder.encode(questions, batch_size=64) if qa else np.zeros((0, 1))
    hits = builder.hits(vectors)
    out: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for example, question, vector, found in zip(qa, questions, vectors, hits, strict=True):
        answer = example["messages"][-1]["content"]
        uid = example["uid"]
        variants = [(found, "teacher")]
        if held_out(uid, question, cfg.seed, cfg.negative_fraction):
            variants.append((builder.hits(vector[None, :], exclude={uid})[0], "held_out"))
        for these, origin in variants:
            kind, messages = builder.example(question, answer, uid, these)
            meta = {
                **example["meta"],
                "context": kind,
                "context_origin": origin,
                "sources": [h.uid for h in these],
            }
            out.append({**example, "messages": messages, "meta": meta})
            counts[kind] += 1
    return out, {k: counts[k] for k in KINDS}


@contextlib.contextmanager
def open_builder(config: RetrievalContextConfig, store_dir: Path | None = None) -> Iterator[ContextBuilder]:
    """The index step's store (embedded directory or Weaviate descriptor) and the embedder it was
    built with; a Weaviate client is closed on exit."""
    from components.common.retrieval.factory import open_store_dir, store_embedder

    path = store_dir or config.store_dir
    if path is None:
        raise InputError("retrieval contexts need the index step's store", field="retrieval.store_dir")
    with open_store_dir(Path(path)) as store:
        yield ContextBuilder(store, store_embedder(Path(path)), config)


def apply(
    qa: list[dict[str, Any]], config: RetrievalContextConfig, store_dir: Path | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The hook synthesis calls once its QA examples are built: serving's contexts when a store is
    known and the config enables them, else the examples unchanged (the summary says which)."""
    path = store_dir or config.store_dir
    if not config.enabled or path is None:
        return qa, {"layout": "single_product", "reason": "disabled" if path else "no index store given"}
    with open_builder(config, Path(path)) as builder:
        out, counts = retrieved_examples(qa, builder)
    return out, {
        "layout": "retrieved",
        "top_k": config.top_k,
        "threshold": config.threshold,
        "context_chars": config.context_chars,
        "negative_fraction": config.negative_fraction,
        "examples": counts,
    }
