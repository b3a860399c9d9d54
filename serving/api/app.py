"""FastAPI app: OpenAI-compatible `/v1/chat/completions` (streaming too) and `/v1/models`, plus
`/healthz` (process up) and `/readyz` (models and store loaded).

Every `/v1` call needs `Authorization: Bearer <key>` (serving/api/auth.py: several keys, each with
its own rate limit; 429 with Retry-After). Bodies over `max_body_bytes` get 413 before any parsing;
invalid JSON gets 400; a body that is JSON but not a valid request gets 422 with the offending field in
`error.param`; a model's full queue gets 503 with Retry-After. Errors use OpenAI's `{"error": {...}}`
shape (serving/api/errors.py). Completions are in serving/api/completions.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from serving.api.auth import KeyRing
from serving.api.completions import create_router as completions_router
from serving.api.errors import ApiError, BodyLimitMiddleware, install_error_handlers
from serving.api.responder import MODELS, Responder
from serving.api.settings import ApiSettings

log = logging.getLogger("prodtune.api")


class _Models:
    """The responder, once loaded (synchronously given, or by `loader` in a background thread)."""

    def __init__(self, responder: Responder | None, loader: Callable[[], Responder] | None) -> None:
        self.responder, self.loader, self.error = responder, loader, None

    def load(self) -> None:
        assert self.loader is not None
        try:
            self.responder = self.loader()
            log.info("models and store loaded")
        except Exception as exc:  # reported by /readyz; the process stays up for inspection
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")

    def current(self) -> Responder:
        if self.responder is None:
            detail = self.error or "models are still loading"
            raise ApiError(503, f"not ready: {detail}", "server_error", code="not_ready")
        return self.responder


def _health_router(models: _Models) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        if models.responder is None:
            status = "failed" if models.error else "loading"
            return JSONResponse({"status": status, "error": models.error}, status_code=503)
        try:
            checks = models.responder.ready()
        except Exception as exc:
            checks = {"responder": False}
            log.warning("readiness check failed: %s", exc)
        ok = bool(checks) and all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)

    return router


def _models_router(authorize: Callable[[Request], str], model_info: dict[str, dict[str, Any]]) -> APIRouter:
    router = APIRouter()
    created = int(time.time())

    def card(model_id: str) -> dict[str, Any]:
        extra = {"route": MODELS[model_id] or "auto", **model_info.get(model_id, {})}
        return {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "prodtune",
            "prodtune": extra,
        }

    @router.get("/v1/models")
    def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [card(m) for m in MODELS]}

    @router.get("/v1/models/{model_id}")
    def get_model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        if model_id not in MODELS:
            raise ApiError(404, f"model '{model_id}' does not exist", param="model", code="model_not_found")
        return card(model_id)

    return router


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
    keys = KeyRing(settings)  # refuses to build without a key
    models = _Models(responder, loader)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        if responder is None and loader is not None:
            threading.Thread(target=models.load, name="prodtune-load", daemon=True).start()
        yield

    app = FastAPI(title="prodtune API", version="1", lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.include_router(_health_router(models))
    # `model_info` may be filled later by the loader: keep the caller's dict, even while empty.
    app.include_router(_models_router(keys.authorize, model_info if model_info is not None else {}))
    app.include_router(completions_router(models.current, keys.authorize, settings))
    return app
