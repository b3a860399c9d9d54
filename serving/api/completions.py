"""`POST /v1/chat/completions`: OpenAI's request and reply, streaming (SSE) or not, with `finish_reason`
and `usage` from the backend, and the `prodtune` extension (route, reason, sources, threshold).

The responder runs in a worker thread; the request's coroutine watches the client meanwhile and sets
the request's cancel flag when it leaves, which stops the model's generation (streaming or not).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from serving.api.errors import ApiError, backend_api_error
from serving.api.responder import MODELS, Responder, RouteResult, StreamText
from serving.api.schemas import ChatCompletionRequest, error_body
from serving.api.settings import ApiSettings
from serving.llm.errors import BackendError


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


def _extension(result: RouteResult, threshold: float | None) -> dict[str, Any]:
    return {
        "route": result.route,
        "confidence": result.confidence,
        "reason": result.reason,
        "threshold": result.threshold if result.threshold is not None else threshold,
        "sources": [asdict(s) for s in result.sources],
    }


def _usage(result: RouteResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def _watch(request: Request, cancel: threading.Event, task: asyncio.Future[Any], poll_s: float) -> Any:
    """Wait for `task`, setting `cancel` as soon as the client is gone (or this coroutine is cancelled)."""
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                cancel.set()
    finally:
        if not task.done():
            cancel.set()


def create_router(
    current: Callable[[], Responder], authorize: Callable[[Request], str], settings: ApiSettings
) -> APIRouter:
    router = APIRouter()
    schema = {
        "requestBody": {
            "content": {"application/json": {"schema": ChatCompletionRequest.model_json_schema()}},
            "required": True,
        }
    }

    @router.post("/v1/chat/completions", openapi_extra=schema)
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
        max_tokens = min(
            req.max_completion_tokens or req.max_tokens or settings.default_max_tokens,
            settings.max_tokens_limit,
        )
        threshold = req.threshold(settings.default_threshold)
        reply = _Reply(request, current(), req, question, threshold, max_tokens, settings.disconnect_poll_s)
        if req.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(reply.sse(), media_type="text/event-stream", headers=headers)
        return await reply.complete()

    return router


class _Reply:
    """One completion: runs the responder in a thread and shapes its result as OpenAI does."""

    def __init__(
        self,
        request: Request,
        responder: Responder,
        req: ChatCompletionRequest,
        question: str,
        threshold: float | None,
        max_tokens: int,
        poll_s: float,
    ) -> None:
        self.request, self.responder, self.req = request, responder, req
        self.question, self.threshold, self.max_tokens, self.poll_s = question, threshold, max_tokens, poll_s
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.cancel = threading.Event()

    def _start(self, on_token: Callable[[str], None] | None) -> asyncio.Future[RouteResult]:
        def run() -> RouteResult:
            return self.responder.respond(
                self.question,
                self.threshold,
                self.req.model,
                max_tokens=self.max_tokens,
                temperature=self.req.temperature,
                on_token=on_token,
                cancel=self.cancel,
            )

        return asyncio.ensure_future(anyio.to_thread.run_sync(run))

    async def complete(self) -> dict[str, Any]:
        try:
            result = await _watch(self.request, self.cancel, self._start(None), self.poll_s)
        except BackendError as exc:
            raise backend_api_error(exc) from None
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": _usage(result),
            "prodtune": _extension(result, self.threshold),
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.req.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def sse(self) -> AsyncIterator[str]:
        """OpenAI's stream: a role chunk, content chunks, the finish chunk (with the route and sources),
        a usage chunk when `stream_options.include_usage` asks for it, then `data: [DONE]`."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()
        task = self._start(lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece))
        out = StreamText()
        yield self._chunk({"role": "assistant", "content": ""})
        try:
            while not (task.done() and pieces.empty()):
                try:
                    piece = await asyncio.wait_for(pieces.get(), timeout=self.poll_s)
                except TimeoutError:
                    if await self.request.is_disconnected():
                        self.cancel.set()
                    continue
                if core := out.piece(piece):
                    yield self._chunk({"content": core})
            result = task.result()
        except BackendError as exc:  # headers are gone: report in-band, as OpenAI does
            api = backend_api_error(exc)
            yield f"data: {json.dumps(error_body(api.message, api.type, code=api.code))}\n\n"
            yield "data: [DONE]\n\n"
            return
        finally:
            if not task.done():
                self.cancel.set()
        if rest := out.rest(result.answer):
            yield self._chunk({"content": rest})
        yield self._chunk({}, result.finish_reason, prodtune=_extension(result, self.threshold))
        if self.req.stream_options is not None and self.req.stream_options.include_usage:
            yield self._chunk(None, usage=_usage(result))  # type: ignore[arg-type]
        yield "data: [DONE]\n\n"
