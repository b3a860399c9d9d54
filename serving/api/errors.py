"""Errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) for everything the API
answers, its own refusals and Starlette's (unknown path, wrong method), plus the body-size limit."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from components.common.ratelimit import retry_after_header
from serving.api.schemas import error_body
from serving.llm.errors import BackendBusy, BackendCancelled, BackendError, BackendUnavailable


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


def backend_api_error(exc: BackendError) -> ApiError:
    """A backend failure as the API reports it: busy 503 + Retry-After, unreachable 503, else 502."""
    if isinstance(exc, BackendBusy):
        headers = {"Retry-After": retry_after_header(exc.retry_after_s)}
        return ApiError(503, str(exc), "server_error", code="model_busy", headers=headers)
    if isinstance(exc, BackendUnavailable):
        return ApiError(503, str(exc), "server_error", code="backend_unavailable")
    if isinstance(exc, BackendCancelled):
        return ApiError(499, str(exc), "server_error", code="cancelled")
    return ApiError(502, str(exc), "server_error", code="backend_error")


_STATUS_TYPES = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        type_ = _STATUS_TYPES.get(exc.status_code, "invalid_request_error")
        headers = dict(exc.headers or {})
        return ApiError(exc.status_code, str(exc.detail), type_, code=code, headers=headers).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"{field}: {first.get('msg', 'invalid request')}"
        return ApiError(422, message, param=field, code="invalid_value").response()


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
