"""Synthesis step: grounded Q&A pairs per product from an OpenAI-compatible teacher.

Flow (`run_synthesis`):
1. read the sampling step's `data-<N>.csv`/`.parquet`; rows that cannot be asked about are quarantined
   (`empty_input`, `duplicate_uid`, `invalid_split`);
2. ask the teacher for K pairs per product, concurrently, through the reply cache (every reply is on
   disk before it is used); invalid replies are retried, then the product is quarantined with the
   reason of its last reply (`invalid_json`, `invalid_schema`, `truncated_reply`); transport
   failures after all retries give `retries_exhausted` or `request_rejected`;
3. filter pairs (quality.py) in input order, so the result does not depend on reply order; a product
   left with no pair is quarantined as `no_supported_pairs`;
4. write the chat-format datasets, `quarantine.jsonl` and `synthesis-summary.json`, whose counts
   reconcile: products == with_pairs + sum(quarantined).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pandas as pd
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from tqdm import tqdm

from components.common import chat_format
from components.common.atomic import atomic_open, write_json
from components.common.config import StepConfig
from components.common.errors import InputError
from components.common.tracking import step_run
from components.synthesis import contexts
from components.synthesis.cache import CachedReply, ReplyCache, input_hash
from components.synthesis.client import (
    RetryPolicy,
    TeacherClient,
    TeacherUnreachableError,
    TransportFailure,
    load_api_key,
)
from components.synthesis.quality import PREFIX, Deduplicator, Grounding, content_words
from components.synthesis.ratelimit import RateLimiter

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
QA_FILE = "dados-fine-tunning.jsonl"  # the name users of the original project know
SUMMARY_FILE = "synthesis-summary.json"
QUARANTINE_FILE = "quarantine.jsonl"
DROPPED_PAIRS_FILE = "dropped-pairs.jsonl"
REQUIRED_COLUMNS = ("uid", "title", "content", "split")
SPLITS = ("train", "eval")


class Price(BaseModel):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class SynthesisConfig(StepConfig):
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: the openai client's own OPENAI_BASE_URL (or api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key, never the key
    api_key_file: Path | None = None  # a mounted Kubernetes Secret, if preferred over env
    prompt: str = "qa_v1"  # a file in components/synthesis/prompts/ (without .yaml) or a path
    pairs_per_product: int = Field(default=3, ge=1, le=10)
    # Ask the teacher about at most this many of the sampled products (each split keeps its share);
    # None: all. The describer's rows need no teacher: they use every sampled product.
    teacher_products: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=512, ge=16)
    temperature: float = Field(default=0.7, ge=0, le=2)
    format_mode: Literal["auto", "json_schema", "json_object_schema", "none"] = "auto"
    concurrency: int = Field(default=8, ge=1, le=256)
    requests_per_min: float | None = Field(default=500, gt=0)
    tokens_per_min: float | None = Field(default=200_000, gt=0)
    timeout_s: float = Field(default=60, gt=0)
    max_retries: int = Field(default=6, ge=0)
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=30, ge=0)
    max_replies: int = Field(default=3, ge=1)  # replies per product before `invalid_*` quarantine
    min_support: float = Field(default=0.6, ge=0, le=1)
    min_answer_words: int = Field(default=2, ge=0)
    # Ask again (up to max_replies) when a valid reply has no pair that passes the filter: worth it
    # for a weak local teacher; costs calls on a paid one. The dropped pairs are still recorded.
    regenerate_ungrounded: bool = False
    check_model: bool = True  # GET /v1/models first; stop if the model is not served (see client.py)
    cache_dir: Path = Path(".prodtune/cache/synthesis")
    prices: dict[str, Price] = Field(default_factory=dict)  # USD per million tokens, by model id
    seed: int = 0
    # QA contexts as serving builds them (contexts.py); used when the index step's store is known.
    retrieval: contexts.RetrievalContextConfig = Field(default_factory=contexts.RetrievalContextConfig)

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, value: str) -> str:
        # Guard against the key itself being pasted here (it would end up in params and logs).
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY)")
        return value


# --- prompt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A worked example, sent as one user/assistant exchange before the product (few-shot)."""

    title: str
    content: str
    reply: str


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: str
    path: Path
    sha256: str
    examples: tuple[Example, ...] = ()

    def render_user(self, k: int, title: str, content: str, attempt: int = 0) -> str:
        # str.replace, not str.format: product text is full of braces.
        title, content = title.strip(), content.strip()
        if "{facts}" in self.user:  # extract-then-phrase: the step names the facts to ask about
            facts = select_facts(title, content, k, skip=attempt * k)
            k = len(facts)
            user = self.user.replace("{facts}", "\n".join(f"- {f}" for f in facts))
        else:
            user = self.user
        user = user.replace("{k}", str(k)).replace("{title}", title)
        return user.replace("{content}", content)

    def messages(self, k: int, title: str, content: str, attempt: int = 0) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system}]
        for ex in self.examples:
            messages.append({"role": "user", "content": self.render_user(1, ex.title, ex.content)})
            messages.append({"role": "assistant", "content": ex.reply})
        messages.append({"role": "user", "content": self.render_user(k, title, content, attempt)})
        return messages


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def select_facts(title: str, content: str, k: int, skip: int = 0) -> list[str]:
    """Up to k sentences of the description worth a question, in text order.

    A candidate has at least 3 content words and at most 300 characters; candidates are ranked by
    how many of the title's words they restate (facts about the product itself, not seller
    boilerplate), then by whether they hold a number, then by position. `skip` passes over the
    best ones (a second request asks about the next facts), wrapping around when they run out."""
    title_keys = {w[:PREFIX] for w in content_words(title)}
    candidates = []
    for pos, sentence in enumerate(s.strip() for s in _SENTENCE_SPLIT.split(content)):
        words = content_words(sentence)
        if len(words) < 3 or len(sentence) > 300:
            continue
        shared = len({w[:PREFIX] for w in words} & title_keys)
        candidates.append((-shared, not any(ch.isdigit() for ch in sentence), pos, sentence))
    ranked = sorted(candidates)
    if ranked and skip:
        start = skip % len(ranked)
        ranked = ranked[start:] + ranked[:start]
    chosen = sorted(ranked[:k], key=lambda c: c[2])
    return [c[3] for c in chosen] or [content[:300].strip()]


def load_prompt(name: str) -> PromptTemplate:
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROMPT_DIR / f"{name}.yaml"
    if not path.is_file():
        raise InputError("prompt file not found", path=path, field="prompt")
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    for key in ("version", "system", "user"):
        if not isinstance(data, dict) or not isinstance(data.get(key), str):
            raise InputError(f"prompt file needs a string '{key}'", path=path, field=key)
    for slot in ("{k}", "{title}", "{content}"):
        if slot not in data["user"]:
            raise InputError(f"user template lacks {slot}", path=path, field="user")
    examples = []
    for i, ex in enumerate(data.get("examples") or []):
        if not isinstance(ex, dict) or not all(
            isinstance(ex.get(k), str) for k in ("title", "content", "reply")
        ):
            raise InputError(
                "each example needs string 'title', 'content' and 'reply'", path=path, field=f"examples.{i}"
            )
        if parse_reply(ex["reply"]).pairs is None:
            raise InputError("example reply is not a valid reply", path=path, field=f"examples.{i}.reply")
        examples.append(Example(ex["title"], ex["content"], ex["reply"]))
    return PromptTemplate(
        data["version"], data["system"], data["user"], path, hashlib.sha256(raw).hexdigest(), tuple(examples)
    )


def reply_schema(k: int | None) -> dict[str, Any]:
    """JSON schema of a reply; with `k`, array bounds too (grammar-constrained servers honour them;
    OpenAI's strict mode rejects them, so the json_schema mode gets the unbounded form)."""
    pair = {
        "type": "object",
        "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
        "required": ["question", "answer"],
        "additionalProperties": False,
    }
    pairs: dict[str, Any] = {"type": "array", "items": pair}
    if k is not None:
        pairs.update(minItems=1, maxItems=k)
    return {
        "type": "object",
        "properties": {"pairs": pairs},
        "required": ["pairs"],
        "additionalProperties": False,
    }


# --- reply validation ------------------------------------------------------------------------


# "1. ", "2) ", "- " before a question or answer are list formatting, not content (small models
# number their pairs); left in, "1" would fail the grounding check as an invented number.
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")


class QAPair(BaseModel):
    question: str = Field(min_length=3, max_length=500)
    answer: str = Field(min_length=1, max_length=2000)

    @field_validator("question", "answer", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return _LIST_MARKER.sub("", value).strip() if isinstance(value, str) else value


class QAReply(BaseModel):
    pairs: list[QAPair] = Field(min_length=1)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


@dataclass(frozen=True)
class ParseResult:
    pairs: list[QAPair] | None
    reason: str | None = None  # invalid_json, invalid_schema, truncated_reply
    detail: str = ""


def parse_reply(content: str, finish_reason: str | None = None) -> ParseResult:
    """Validate a reply: strict JSON first, then the outermost {...} (models wrap JSON in prose)."""
    text = _FENCE.sub("", content.strip())
    data: Any = None
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1]):
        try:
            data = json.loads(candidate)
            break
        except ValueError:
            continue
    truncated = finish_reason == "length"
    if data is None:
        reason = "truncated_reply" if truncated else "invalid_json"
        return ParseResult(None, reason, f"not JSON: {content[:80]!r}")
    if isinstance(data, list):  # a bare list of pairs is an honest answer in the wrong wrapper
        data = {"pairs": data}
    try:
        return ParseResult(QAReply.model_validate(data).pairs)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        reason = "truncated_reply" if truncated else "invalid_schema"
        return ParseResult(None, reason, f"{where}: {err['msg']}")


# --- input -----------------------------------------------------------------------------------


def find_input(path: Path) -> Path:
    """`path` itself, or the single `data-<N>.csv`/`.parquet` in a directory (parquet preferred)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError("input not found", path=path)
    for pattern in ("data-*.parquet", "data-*.csv"):
        found = sorted(path.glob(pattern))
        if len(found) > 1:
            raise InputError(f"several {pattern} files; pass one", path=path)
        if found:
            return found[0]
    raise InputError("no data-<N>.csv or data-<N>.parquet in directory", path=path)


def read_products(path: Path) -> pd.DataFrame:
    path = find_input(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read input: {exc}", path=path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s): {', '.join(missing)}", path=path, field=missing[0])
    frame = frame[list(REQUIRED_COLUMNS)].fillna("").astype(str)
    return frame.reset_index(drop=True)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Product:
    row: int
    uid: str
    title: str
    content: str
    split: str


@dataclass
class Outcome:
    pairs: list[QAPair] | None = None
    reason: str | None = None  # quarantine reason when pairs is None
    detail: str = ""
    replies: int = 0  # replies on disk for this product
    calls: int = 0  # replies fetched in this run (the rest came from the cache)
    usage: Counter[str] = field(default_factory=Counter)
    rejected: list[QAPair] = field(default_factory=list)  # pairs of replies replaced by a new request


def _grounded(grounding: Grounding, pair: QAPair) -> bool:
    return grounding.check(pair.answer).keep and grounding.check_question(pair.question) is None


def _settle(outcome: Outcome, valid: list[list[QAPair]]) -> Outcome:
    """The last valid reply is the product's; earlier ones are recorded as dropped pairs."""
    outcome.pairs = valid[-1]
    outcome.rejected = [pair for pairs in valid[:-1] for pair in pairs]
    return outcome


class Synthesizer:
    def __init__(
        self, config: SynthesisConfig, prompt: PromptTemplate, client: TeacherClient, cache: ReplyCache
    ):
        self.config = config
        self.prompt = prompt
        self.client = client
        self.cache = cache

    async def product(self, product: Product) -> Outcome:
        """Ask until a reply is valid (and, with `regenerate_ungrounded`, has a grounded pair).

        The n-th request for a product renders the prompt with `attempt=n`, so an extract-then-phrase
        prompt (qa_v2) asks about the next facts, and a resumed run rebuilds the same messages."""
        cfg = self.config
        k = cfg.pairs_per_product
        entry = self.cache.load(product.uid, input_hash(product.title, product.content))
        outcome = Outcome(replies=len(entry.replies))
        parsed = ParseResult(None, "invalid_json", "no reply")
        grounding = (
            Grounding(product.title, product.content, min_support=cfg.min_support,
                      min_answer_words=cfg.min_answer_words)
            if cfg.regenerate_ungrounded else None
        )  # fmt: skip
        valid: list[list[QAPair]] = []

        def good(result: ParseResult) -> bool:
            if result.pairs is None:
                return False
            valid.append(result.pairs)
            return grounding is None or any(_grounded(grounding, pair) for pair in result.pairs[:k])

        for reply in entry.replies:  # resume: a cached good reply costs nothing
            parsed = parse_reply(reply.content, reply.finish_reason)
            if good(parsed):
                return _settle(outcome, valid)
        while len(entry.replies) < cfg.max_replies:
            messages = self.prompt.messages(k, product.title, product.content, attempt=len(entry.replies))
            try:
                done = await self.client.complete(messages, uid=product.uid, max_tokens=cfg.max_tokens)
            except TransportFailure as exc:
                if valid:  # an earlier valid reply still goes through the filter
                    return _settle(outcome, valid)
                outcome.reason, outcome.detail = exc.reason, exc.detail
                return outcome
            # on disk before it is used; in a thread, as fsync would stall every other request
            reply = CachedReply(done.content, done.usage, done.finish_reason)
            await asyncio.to_thread(self.cache.append, entry, reply)
            outcome.calls += 1
            outcome.replies += 1
            outcome.usage.update(done.usage)
            parsed = parse_reply(done.content, done.finish_reason)
            if good(parsed):
                return _settle(outcome, valid)
        if valid:  # valid but ungrounded: the filter drops (and records) its pairs
            return _settle(outcome, valid)
        outcome.reason, outcome.detail = parsed.reason, parsed.detail
        return outcome

    async def run(self, products: list[Product], progress: bool) -> list[Outcome]:
        sem = asyncio.Semaphore(self.config.concurrency)

        async def one(p: Product) -> Outcome:
            async with sem:
                return await self.product(p)

        tasks = [asyncio.ensure_future(one(p)) for p in products]
        bar = tqdm(total=len(tasks), desc="synthesis", unit="product", disable=not progress)
        try:
            for fut in asyncio.as_completed(tasks):
                await fut
                bar.update(1)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        finally:
            bar.close()
        return [t.result() for t in tasks]


def screen_rows(frame: pd.DataFrame) -> tuple[list[Product], list[dict[str, Any]]]:
    """Products to ask about, and quarantine records for rows that cannot be asked about."""
    products, quarantined, seen = [], [], set()
    for row, rec in enumerate(frame.itertuples(index=False)):
        uid, title, content, split = (str(rec.uid).strip(), str(rec.title), str(rec.content), str(rec.split))
        reason = None
        if not uid or not title.strip() or not content.strip():
            reason = "empty_input"
        elif uid in seen:
            reason = "duplicate_uid"
        elif split not in SPLITS:
            reason = "invalid_split"
        if reason:
            quarantined.append({"row": row, "uid": uid, "reason": reason, "detail": "", "title": title})
            continue
        seen.add(uid)
        products.append(Product(row, uid, title.strip(), content.strip(), split))
    return products, quarantined


def teacher_subset(products: list[Product], cap: int | None) -> list[Product]:
    """The products the teacher is asked about: all, or `cap` of them with each split keeping its
    share of the sample, in sample order (the sampling step's seeded shuffle)."""
    if cap is None or cap >= len(products):
        return products
    by_split = {s: [p for p in products if p.split == s] for s in SPLITS}
    take = {s: round(cap * len(rows) / len(products)) for s, rows in by_split.items()}
    take["train"] = min(len(by_split["train"]), cap - take["eval"])  # rounding: the total is `cap`
    chosen = {p.row for s in SPLITS for p in by_split[s][: take[s]]}
    return [p for p in products if p.row in chosen]


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def estimate_cost(config: SynthesisConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = config.prices.get(config.model)
    if price is None:
        return None
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


def run_synthesis(
    config: SynthesisConfig,
    input_path: str | Path,
    output_dir: str | Path,
    *,
    environ: dict[str, str] | None = None,
    progress: bool = True,
    index_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the step; returns the summary (also written to `synthesis-summary.json`). `index_dir`:
    the index step's store, for QA contexts retrieved as in serving (contexts.py)."""
    environ = dict(os.environ if environ is None else environ)
    prompt = load_prompt(config.prompt)
    frame = read_products(Path(input_path))
    products, quarantined = screen_rows(frame)
    asked = teacher_subset(products, config.teacher_products)
    api_key = load_api_key(config.api_key_env, config.api_key_file, environ)
    if api_key is None:
        raise InputError(f"no teacher API key: set {config.api_key_env}", field="api_key_env")
    base_url = config.base_url or environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    params = {
        "prompt_version": prompt.version,
        "prompt_sha256": prompt.sha256[:16],
        "chat_format_version": chat_format.FORMAT_VERSION,
        "model": config.model,
        "base_url": _redact_url(base_url),
        "pairs_per_product": config.pairs_per_product,
        "concurrency": config.concurrency,
        "requests_per_min": config.requests_per_min,
        "tokens_per_min": config.tokens_per_min,
        "format_mode": config.format_mode,
        "min_support": config.min_support,
        "input": str(input_path),
        "input_rows": len(frame),
        "teacher_products": config.teacher_products,  # the count asked is the `asked` metric
    }
    with step_run("synthesis", params) as tracker:
        started = time.monotonic()
        outcomes, client = asyncio.run(_fetch_all(config, prompt, asked, api_key, base_url, progress))
        summary = _write_outputs(
            config, prompt, asked, outcomes, quarantined, Path(output_dir), len(frame), index_dir, products
        )
        stats = client.stats
        summary.update(
            requests=stats.requests,
            retries=stats.retries,
            errors=dict(stats.errors),
            format_mode=client.format_mode,
            format_fallbacks=stats.format_fallbacks,
            rate_limit_wait_s=round(client.limiter.waited_s, 3),
            duration_s=round(time.monotonic() - started, 3),
        )
        write_json(Path(output_dir) / SUMMARY_FILE, summary)
        _track(tracker, summary, prompt, Path(output_dir))
        _fail_if_unreachable(summary, quarantined_path=Path(output_dir) / QUARANTINE_FILE, host=base_url)
    return summary


def _fail_if_unreachable(summary: dict[str, Any], *, quarantined_path: Path, host: str) -> None:
    """Every product lost to transport errors and no reply at all is not a yield of zero but a teacher
    that is down (or crashed on the first request): stop here with the host and cause, instead of a
    fine-tune that finds no rows. The outputs stay written, the quarantine names every product."""
    errors = summary["errors"]
    no_reply = summary["asked"] and not summary["with_pairs"] and not summary["teacher_calls"]
    if no_reply and errors and set(summary["quarantined"]) <= {"retries_exhausted"}:
        cause = ", ".join(f"{k} x{v}" for k, v in sorted(errors.items()))
        raise TeacherUnreachableError(
            f"teacher {_redact_url(host)} gave no reply for any of {summary['asked']} products "
            f"({cause}; is the server up? quarantine: {quarantined_path})",
            field="base_url",
        )


async def _fetch_all(
    config: SynthesisConfig,
    prompt: PromptTemplate,
    products: list[Product],
    api_key: Any,
    base_url: str,
    progress: bool,
) -> tuple[list[Outcome], TeacherClient]:
    k = config.pairs_per_product
    client = TeacherClient(
        base_url=base_url,
        api_key=api_key,
        model=config.model,
        schema=reply_schema(None),
        bounded_schema=reply_schema(k),
        format_mode=config.format_mode,
        timeout_s=config.timeout_s,
        temperature=config.temperature,
        policy=RetryPolicy(config.max_retries, config.base_delay_s, config.max_delay_s),
        limiter=RateLimiter(config.requests_per_min, config.tokens_per_min),
        seed=config.seed,
    )
    cache = ReplyCache(config.cache_dir, prompt.version + "-" + prompt.sha256[:8], config.model)
    try:
        if config.check_model and products:
            await client.check_model()
        outcomes = await Synthesizer(config, prompt, client, cache).run(products, progress)
    finally:
        await client.close()
    return outcomes, client


def _example(messages: list[dict[str, str]], product: Product, meta: dict[str, Any]) -> dict[str, Any]:
    return {"messages": messages, "uid": product.uid, "split": product.split, "meta": meta}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_outputs(
    config: SynthesisConfig,
    prompt: PromptTemplate,
    products: list[Product],
    outcomes: list[Outcome],
    quarantined: list[dict[str, Any]],
    out: Path,
    input_rows: int,
    index_dir: str | Path | None,
    described: list[Product],
) -> dict[str, Any]:
    """`products` were asked (with their `outcomes`); `described` get describer rows: every screened
    product, asked or not."""
    k = config.pairs_per_product
    meta = {
        "prompt_version": prompt.version,
        "model": config.model,
        "format_version": chat_format.FORMAT_VERSION,
    }
    dedup = Deduplicator()
    qa: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    pair_counts: Counter[str] = Counter()
    usage: Counter[str] = Counter()
    calls = cached = 0
    for product, outcome in zip(products, outcomes, strict=True):  # input order: deterministic dedup
        usage.update(outcome.usage)
        calls += outcome.calls
        cached += outcome.replies - outcome.calls
        if outcome.pairs is None:
            quarantined.append(_quarantine_record(product, outcome))
            continue
        grounding = Grounding(
            product.title,
            product.content,
            min_support=config.min_support,
            min_answer_words=config.min_answer_words,
        )
        for pair in outcome.rejected:  # replies replaced by a new request: recorded, never kept
            pair_counts["generated"] += 1
            answer = grounding.check(pair.answer)
            verdict = grounding.check_question(pair.question) or answer
            reason = verdict.reason or "beyond_k"
            pair_counts["dropped:" + reason] += 1
            dropped.append(
                {"uid": product.uid, "reason": reason, "support": round(answer.support, 3),
                 "detail": verdict.detail, "question": pair.question, "answer": pair.answer, "replaced": True}
            )  # fmt: skip
        seen: set[str] = set()
        kept = 0
        for index, pair in enumerate(outcome.pairs):
            pair_counts["generated"] += 1
            answer = grounding.check(pair.answer)  # its support is recorded even if the question fails
            verdict = grounding.check_question(pair.question) or answer
            reason = "beyond_k" if index >= k else verdict.reason
            reason = reason or dedup.check(seen, pair.question, pair.answer)
            if reason:
                pair_counts["dropped:" + reason] += 1
                dropped.append(
                    {"uid": product.uid, "reason": reason, "support": round(answer.support, 3),
                     "detail": verdict.detail, "question": pair.question, "answer": pair.answer}
                )  # fmt: skip
                continue
            kept += 1
            messages = chat_format.qa_messages(pair.question, [(product.title, product.content)], pair.answer)
            qa.append(
                _example(
                    messages,
                    product,
                    {**meta, "task": "qa", "pair": index, "support": round(answer.support, 3)},
                )
            )
        if kept == 0:
            quarantined.append(
                _quarantine_record(
                    product,
                    Outcome(
                        reason="no_supported_pairs",
                        detail=f"{len(outcome.pairs)} pair(s) dropped",
                        replies=outcome.replies,
                    ),
                )
            )
        pair_counts["kept"] += kept
    qa, context_summary = contexts.apply(qa, config.retrieval, Path(index_dir) if index_dir else None)
    describer = [
        _example(chat_format.describer_messages(p.title, p.content), p, {**meta, "task": "describer"})
        for p in described
    ]
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / QA_FILE, qa)
    for split in SPLITS:
        _write_jsonl(out / f"qa-{split}.jsonl", [r for r in qa if r["split"] == split])
        _write_jsonl(out / f"describer-{split}.jsonl", [r for r in describer if r["split"] == split])
    quarantined.sort(key=lambda r: r["row"])
    _write_jsonl(out / QUARANTINE_FILE, quarantined)
    _write_jsonl(out / DROPPED_PAIRS_FILE, dropped)
    reasons = Counter(r["reason"] for r in quarantined)
    with_pairs = len({r["uid"] for r in qa})
    not_asked = len(described) - len(products)  # screened, described, left out of the teacher's share
    # never publish counts that do not add up
    if with_pairs + sum(reasons.values()) + not_asked != input_rows:
        raise RuntimeError(
            f"counts do not reconcile: {with_pairs} + {dict(reasons)} + {not_asked} not asked != {input_rows}"
        )
    cost = estimate_cost(config, usage["prompt_tokens"], usage["completion_tokens"])
    return {
        "products": input_rows,
        "asked": len(products),
        "not_asked": not_asked,
        "with_pairs": with_pairs,
        "quarantined": dict(sorted(reasons.items())),
        "pairs": {
            "generated": pair_counts["generated"],
            "kept": pair_counts["kept"],
            "dropped": {k[8:]: v for k, v in sorted(pair_counts.items()) if k.startswith("dropped:")},
        },
        "examples": {
            "qa": len(qa),
            **{f"qa_{s}": sum(r["split"] == s for r in qa) for s in SPLITS},
            **{f"describer_{s}": sum(r["split"] == s for r in describer) for s in SPLITS},
        },
        "contexts": context_summary,
        "prompt_version": prompt.version,
        "model": config.model,
        "teacher_calls": calls,
        "cached_replies_used": cached,
        "tokens": {"prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"]},
        "cost_usd": None if cost is None else round(cost, 6),
    }


def _quarantine_record(product: Product, outcome: Outcome) -> dict[str, Any]:
    return {
        "row": product.row,
        "uid": product.uid,
        "reason": outcome.reason,
        "detail": outcome.detail,
        "replies": outcome.replies,
        "title": product.title,
    }


def _track(tracker: Any, summary: dict[str, Any], prompt: PromptTemplate, out: Path) -> None:
    metrics: dict[str, float] = {
        "products": summary["products"],
        "asked": summary["asked"],
        "with_pairs": summary["with_pairs"],
        "quarantined": sum(summary["quarantined"].values()),
        "pairs_generated": summary["pairs"]["generated"],
        "pairs_kept": summary["pairs"]["kept"],
        "requests": summary["requests"],
        "retries": summary["retries"],
        "teacher_calls": summary["teacher_calls"],
        "cached_replies_used": summary["cached_replies_used"],
        "tokens_in": summary["tokens"]["prompt"],
        "tokens_out": summary["tokens"]["completion"],
        "duration_s": summary["duration_s"],
    }
    if summary["cost_usd"] is not None:
        metrics["cost_usd"] = summary["cost_usd"]
    metrics.update({f"quarantined_{k}": v for k, v in summary["quarantined"].items()})
    metrics.update({f"pairs_dropped_{k}": v for k, v in summary["pairs"]["dropped"].items()})
    metrics.update({f"examples_{k}": v for k, v in summary["examples"].items()})
    tracker.log_metrics(metrics)
    tracker.set_tags({"prodtune.prompt_version": prompt.version})
    tracker.log_artifact(out / SUMMARY_FILE)
    tracker.log_artifact(out / QUARANTINE_FILE)
    tracker.log_artifact(out / DROPPED_PAIRS_FILE)
    tracker.log_artifact(prompt.path, artifact_path="prompt")
    # a small table to eyeball the data without downloading it
    with open(out / QA_FILE, encoding="utf-8") as fh:
        sample = [json.loads(line) for _, line in zip(range(20), fh, strict=False)]
    rows = [{"uid": r["uid"], "question": r["messages"][1]["content"].rsplit("Question: ", 1)[-1],
             "answer": r["messages"][-1]["content"]} for r in sample]  # fmt: skip
    tracker.log_dict(rows, "sample-pairs.json")
