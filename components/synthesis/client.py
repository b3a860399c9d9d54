"""Async client for any OpenAI-compatible teacher, with the retry policy a paid key needs.

- The `openai` package talks to the endpoint; its own retries are off (max_retries=0) so that one
  policy, ours, decides: 429, 5xx, timeouts, dropped connections and unparsable response bodies are
  retried with exponential backoff and jitter, waiting at least what `Retry-After` asks.
- 401/403 abort the run (`TeacherAuthError`): every other request would fail the same way.
- Other 4xx quarantine the product (`request_rejected`).
- Before the first request, `check_model` asks the server which models it serves (GET /v1/models)
  and stops the run with one line when the configured model is not among them: a stock llama.cpp
  server asked for `gpt-4o-mini` answers every request with HTTP 500, which must not become a run
  of quarantined products.
- `format_mode: auto` decides the structured-output mode ONCE, with one probe request at a time
  (an asyncio lock): it steps down (`FORMAT_MODES`) only when the server explicitly rejects
  `response_format` (see `is_format_rejection`); any other error, a 500 included, is retried as
  usual, and concurrent requests wait for the decision instead of each stepping down on its own.
- The key is a `SecretStr` from the environment (in Kubernetes, a Secret exposed as env or file).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion
from pydantic import SecretStr

from components.common.errors import InputError
from components.synthesis.ratelimit import RateLimiter

# Structured output, strongest first. "json_schema" is OpenAI's; "json_object_schema" is the
# dialect of llama-cpp-python's server (grammar-constrained JSON); "none" relies on the prompt.
FORMAT_MODES = ("json_schema", "json_object_schema", "none")
UID_HEADER = "X-Prodtune-Uid"


class TeacherAuthError(RuntimeError):
    """The endpoint refused our credentials: stop the run instead of quarantining everything."""


class TeacherUnreachableError(InputError):
    """No product got a single reply: the endpoint is down or dies on requests."""


class TeacherModelError(InputError):
    """The endpoint does not serve the configured model: stop before the first product."""


# How servers say "this response_format is not supported": OpenAI (400, "Invalid parameter:
# 'response_format' ... not supported with this model"), llama-cpp-python (500, its pydantic
# validation error naming the field: "response_format ... Input should be 'text' or 'json_object'"),
# vLLM / llama.cpp (400, "response_format type ... unsupported"). The phrase must be within
# `_WINDOW` characters of the field name: a 500 that merely echoes the request is not a refusal.
_REJECTION = re.compile(
    r"not supported|unsupported|input should be|invalid parameter|must be one of|not one of|"
    r"unknown (?:variant|type|value)|is not allowed|extra inputs are not permitted|literal_error",
    re.IGNORECASE,
)
_WINDOW = 160


def is_format_rejection(status: int, text: str) -> bool:
    """True only for an explicit refusal of `response_format` (never for a bare 500)."""
    if status not in (400, 422, 500):
        return False
    for match in re.finditer("response_format", text):
        window = text[max(0, match.start() - _WINDOW) : match.end() + _WINDOW]
        if _REJECTION.search(window):
            return True
    return False


@dataclass
class TransportFailure(Exception):
    """Retries exhausted (or a request the server will never accept): quarantine the product."""

    reason: str
    detail: str


@dataclass
class Completion:
    content: str
    usage: dict[str, int]
    finish_reason: str | None


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    format_fallbacks: int = 0
    backoff_s: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Exponential backoff with equal jitter; never sooner than the server's Retry-After."""
        cap = min(self.max_delay_s, self.base_delay_s * 2**retry)
        delay = cap / 2 + rng.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after_s) + rng.uniform(0, 0.1))
        return delay


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or HTTP date), else None."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def load_api_key(env_name: str, file: Path | None, environ: dict[str, str]) -> SecretStr | None:
    """The key from a mounted Secret file if configured, else from the named env variable."""
    if file is not None:
        try:
            return SecretStr(Path(file).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise InputError(f"cannot read API key file: {exc.strerror}", path=file) from None
    value = environ.get(env_name)
    return SecretStr(value) if value else None


def response_format_for(
    mode: str, schema: dict[str, Any], bounded_schema: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "qa_pairs", "schema": schema, "strict": True}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": bounded_schema or schema}
    return None


class TeacherClient:
    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: SecretStr,
        model: str,
        schema: dict[str, Any],
        bounded_schema: dict[str, Any] | None = None,
        format_mode: str = "auto",
        timeout_s: float = 60.0,
        temperature: float = 0.7,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key.get_secret_value(), max_retries=0, timeout=timeout_s
        )
        self.model = model
        self.schema = schema
        self.bounded_schema = bounded_schema
        self.auto_format = format_mode == "auto"
        self.format_mode = FORMAT_MODES[0] if self.auto_format else format_mode
        self.temperature = temperature
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or RateLimiter(None, None)
        self.stats = ClientStats()
        self._rng = random.Random(seed)
        self._sleep = sleep
        self.base_url = str(self._client.base_url)
        # auto: undecided until one request succeeds; until then requests go one at a time
        self._format_decided = not self.auto_format
        self._format_lock = asyncio.Lock()

    async def close(self) -> None:
        await self._client.close()

    async def check_model(self) -> list[str] | None:
        """Fail fast (TeacherModelError) if GET /v1/models answers without our model.

        Returns the served ids, or None when the endpoint does not list models (404/405/501: some
        gateways don't) or cannot be reached yet (the first request then reports that as usual)."""
        try:
            page = await self._client.models.list()
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise TeacherAuthError(f"teacher refused the API key (HTTP {exc.status_code})") from None
            return None
        except (openai.APIConnectionError, openai.APITimeoutError, ValueError):
            return None
        served = sorted({m.id for m in page.data})
        if self.model not in served:
            offered = ", ".join(served[:10]) + (f" (+{len(served) - 10} more)" if len(served) > 10 else "")
            raise TeacherModelError(
                f"teacher at {_redact(self.base_url)} does not serve model '{self.model}'; it offers: "
                f"{offered or 'nothing'} (set `model` in the synthesis config or PRODTUNE_TEACHER_MODEL_ID)",
                field="model",
            )
        return served

    async def complete(self, messages: list[dict[str, str]], *, uid: str, max_tokens: int) -> Completion:
        """One chat completion, retried on transient failures; raises TransportFailure when exhausted.

        While the output format is undecided (auto mode, no success yet) requests run one at a time
        under a lock, so the mode steps down at most once per explicit rejection, never per request."""
        if not self._format_decided:
            async with self._format_lock:
                if not self._format_decided:
                    return await self._probe(messages, uid, max_tokens)
        return await self._with_retries(messages, uid, max_tokens)

    async def _probe(self, messages: list[dict[str, str]], uid: str, max_tokens: int) -> Completion:
        while True:
            try:
                completion = await self._with_retries(messages, uid, max_tokens, probing=True)
            except _FormatRejected:
                self.format_mode = FORMAT_MODES[FORMAT_MODES.index(self.format_mode) + 1]
                self.stats.format_fallbacks += 1
                continue
            self._format_decided = True
            return completion

    async def _with_retries(
        self, messages: list[dict[str, str]], uid: str, max_tokens: int, *, probing: bool = False
    ) -> Completion:
        estimate = sum(len(m["content"]) for m in messages) // 4 + max_tokens
        retry = 0
        while True:
            await self.limiter.acquire(estimate)
            self.stats.requests += 1
            try:
                completion = await self._once(messages, uid, max_tokens)
            except openai.APIStatusError as exc:
                self.limiter.settle(estimate, None)
                status, text = exc.status_code, f"{exc.body} {exc.message}"
                if status in (401, 403):
                    raise TeacherAuthError(f"teacher refused the API key (HTTP {status})") from None
                if probing and self.format_mode != FORMAT_MODES[-1] and is_format_rejection(status, text):
                    raise _FormatRejected() from None
                if status in (408, 429) or status >= 500:
                    kind, retry_after = f"http_{status}", parse_retry_after(exc.response.headers)
                else:
                    raise TransportFailure("request_rejected", f"HTTP {status}: {exc.message}") from None
            except openai.APITimeoutError:
                kind, retry_after = "timeout", None
            except openai.APIConnectionError:
                kind, retry_after = "connection", None
            except _MalformedBody:
                kind, retry_after = "malformed_body", None
            else:
                self.limiter.settle(estimate, completion.usage.get("total_tokens"))
                return completion
            self.stats.errors[kind] += 1
            if retry >= self.policy.max_retries:
                raise TransportFailure("retries_exhausted", f"{kind} after {retry + 1} attempt(s)")
            delay = self.policy.backoff(retry, retry_after, self._rng)
            self.stats.retries += 1
            self.stats.backoff_s += delay
            retry += 1
            await self._sleep(delay)

    async def _once(self, messages: list[dict[str, str]], uid: str, max_tokens: int) -> Completion:
        kwargs: dict[str, Any] = {}
        fmt = response_format_for(self.format_mode, self.schema, self.bounded_schema)
        if fmt is not None:
            kwargs["response_format"] = fmt
        raw = await self._client.chat.completions.with_raw_response.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=self.temperature,
            extra_headers={UID_HEADER: uid},
            **kwargs,
        )
        # Parse the body ourselves: a truncated or non-JSON body is a transient fault to retry,
        # not an exception deep inside the SDK.
        try:
            body = json.loads(raw.http_response.text)
            parsed = ChatCompletion.model_validate(body)
            choice = parsed.choices[0]
        except (ValueError, IndexError) as exc:
            raise _MalformedBody(str(exc)) from None
        usage = parsed.usage
        return Completion(
            content=choice.message.content or "",
            usage={
                "prompt_tokens": usage.prompt_tokens if usage else 0,
                "completion_tokens": usage.completion_tokens if usage else 0,
                "total_tokens": usage.total_tokens if usage else 0,
            },
            finish_reason=choice.finish_reason,
        )


class _MalformedBody(Exception):
    pass


class _FormatRejected(Exception):
    """The server explicitly refused the current `response_format` (probe only)."""


def _redact(url: str) -> str:
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
