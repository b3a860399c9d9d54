"""FastAPI app: OpenAI-compatible `/v1/chat/completions` (streaming too) and `/v1/models`, plus
`/healthz` (process up) and `/readyz` (models and store loaded).

Every `/v1` call needs `Authorization: Bearer <PRODTUNE_API_KEY>`, compared in constant time; calls
are rate-limited per key (token bucket; 429 with Retry-After). Bodies over `max_body_bytes` get 413
before any parsing; invalid JSON gets 400; a body that is JSON but not a valid request gets 422 with
the offending field in `error.param`. Errors use OpenAI's `{"error": {...}}` shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from components.common.errors import InputError
from serving.api.ratelimit import TokenBucket, retry_after_header
from serving.api.responder import MODELS, Responder, RouteResult
from serving.api.schemas import ChatCompletionRequest, error_body
from serving.api.settings import ApiSettings
from serving.llm.errors import BackendError, BackendUnavailable

log = logging.getLogger("prodtune.api")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = error_body(self.message, self.type, param=self.param, code=self.code)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Reject bodies over `max_bytes` with 413: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = ApiError(413, f"request body exceeds {self.max_bytes} bytes", code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_large.response()(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_large.response()(scope, receive, send)


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def parse_request(raw: bytes) -> ChatCompletionRequest:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid JSON body: {exc}", code="invalid_json") from None
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field_name(tuple(first["loc"]))
        msg = f"{field}: {first['msg']}" + (f" ({exc.error_count()} errors)" if exc.error_count() > 1 else "")
        raise ApiError(422, msg, param=field, code="invalid_value") from None


def _sources(result: RouteResult) -> list[dict[str, Any]]:
    return [asdict(s) for s in result.sources]


def _extension(result: RouteResult, threshold: float | None) -> dict[str, Any]:
    return {
        "route": result.route,
        "confidence": result.confidence,
        "reason": result.reason,
        "threshold": result.threshold if result.threshold is not None else threshold,
        "sources": _sources(result),
    }


def create_app(
    responder: Responder | None = None,
    *,
    loader: Callable[[], Responder] | None = None,
    settings: ApiSettings | None = None,
    model_info: dict[str, dict[str, Any]] | None = None,
) -> FastAPI:
    """Build the app over a ready `responder`, or over a `loader` run in the background at startup
    (so `/healthz` answers while models load and `/readyz` turns 200 once they are in)."""
    settings = settings or ApiSettings()
    if settings.key is None or not settings.key.get_secret_value():
        raise InputError("PRODTUNE_API_KEY is not set: the API refuses to run without a key", field="key")
    key = settings.key.get_secret_value().encode()
    bucket = TokenBucket(settings.rate_per_minute, settings.rate_burst)
    created = int(time.time())
    state: dict[str, Any] = {"responder": responder, "error": None}

    def load() -> None:
        assert loader is not None
        try:
            state["responder"] = loader()
            log.info("models and store loaded")
        except Exception as exc:  # reported by /readyz; the process stays up for inspection
            state["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        if responder is None and loader is not None:
            threading.Thread(target=load, name="prodtune-load", daemon=True).start()
        yield

    app = FastAPI(title="prodtune API", version="1", lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    def authorize(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise ApiError(
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                "authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        wait = bucket.take(hashlib.sha256(token.encode()).hexdigest())
        if wait > 0:
            raise ApiError(
                429,
                "rate limit exceeded",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry_after_header(wait)},
            )

    def current() -> Responder:
        if state["responder"] is None:
            detail = state["error"] or "models are still loading"
            raise ApiError(503, f"not ready: {detail}", "server_error", code="not_ready")
        return state["responder"]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if state["responder"] is None:
            status = "failed" if state["error"] else "loading"
            return JSONResponse({"status": status, "error": state["error"]}, status_code=503)
        try:
            checks = state["responder"].ready()
        except Exception as exc:
            checks = {"responder": False}
            log.warning("readiness check failed: %s", exc)
        ok = bool(checks) and all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)

    def model_card(model_id: str) -> dict[str, Any]:
        extra = {"route": MODELS[model_id] or "auto", **(model_info or {}).get(model_id, {})}
        return {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "prodtune",
            "prodtune": extra,
        }

    @app.get("/v1/models")
    def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [model_card(m) for m in MODELS]}

    @app.get("/v1/models/{model_id}")
    def get_model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        if model_id not in MODELS:
            raise ApiError(404, f"model '{model_id}' does not exist", param="model", code="model_not_found")
        return model_card(model_id)

    @app.post("/v1/chat/completions", openapi_extra={"requestBody": {"content": {"application/json": {
        "schema": ChatCompletionRequest.model_json_schema()}}, "required": True}})  # fmt: skip
    async def chat_completions(request: Request) -> Any:
        authorize(request)
        req = parse_request(await request.body())
        if req.model not in MODELS:
            raise ApiError(
                404,
                f"model '{req.model}' does not exist; see /v1/models",
                param="model",
                code="model_not_found",
            )
        question = req.question()
        if len(question) > settings.max_input_chars:
            raise ApiError(
                422, f"the user message exceeds {settings.max_input_chars} characters", param="messages"
            )
        max_tokens = min(req.max_completion_tokens or req.max_tokens or settings.default_max_tokens,
                         settings.max_tokens_limit)  # fmt: skip
        threshold = req.threshold(settings.default_threshold)
        responder_ = current()
        kwargs = {"max_tokens": max_tokens, "temperature": req.temperature}
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if req.stream:
            events = responder_.respond_stream(question, threshold, req.model, **kwargs)
            return StreamingResponse(
                _sse(events, completion_id, now, req.model, threshold),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            result = await run_in_threadpool(responder_.respond, question, threshold, req.model, **kwargs)
        except BackendUnavailable as exc:
            raise ApiError(503, str(exc), "server_error", code="backend_unavailable") from None
        except BackendError as exc:
            raise ApiError(502, str(exc), "server_error", code="backend_error") from None
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": now,
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
            "prodtune": _extension(result, threshold),
        }

    return app


def _sse(
    events: Iterator[str | RouteResult], completion_id: str, created: int, model: str, threshold: float | None
) -> Iterator[str]:
    """OpenAI's stream: `data: {chunk}` lines, the route and sources on the last chunk, `data: [DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for event in events:
            if isinstance(event, RouteResult):
                yield chunk({}, event.finish_reason, prodtune=_extension(event, threshold))
            elif event:
                yield chunk({"content": event})
    except BackendError as exc:  # headers are gone: report in-band, as OpenAI does
        code = "backend_unavailable" if isinstance(exc, BackendUnavailable) else "backend_error"
        yield f"data: {json.dumps(error_body(str(exc), 'server_error', code=code))}\n\n"
    yield "data: [DONE]\n\n"
