"""A small client for the prodtune API: the UI talks to the API only, never to the models."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass
class Answer:
    text: str = ""
    route: str = ""
    confidence: float = 0.0
    reason: str = ""
    threshold: float = 0.0
    sources: list[dict[str, Any]] = field(default_factory=list)

    def absorb(self, extension: dict[str, Any]) -> None:
        self.route = extension.get("route", "")
        self.confidence = float(extension.get("confidence") or 0.0)
        self.reason = extension.get("reason", "")
        self.threshold = float(extension.get("threshold") or 0.0)
        self.sources = list(extension.get("sources") or [])


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise ApiError(response.status_code, message)


class ApiClient:
    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, http: httpx.Client | None = None
    ) -> None:
        base_url = (base_url or os.environ.get("PRODTUNE_API_URL") or "http://127.0.0.1:8000").rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("PRODTUNE_API_KEY", "")
        self.base_url = base_url
        self.http = http or httpx.Client(base_url=base_url, timeout=httpx.Timeout(300.0, connect=5.0))
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def models(self) -> list[str]:
        r = self.http.get("/v1/models", headers=self.headers)
        _raise_for(r)
        return [m["id"] for m in r.json()["data"]]

    def _payload(self, question: str, model: str, threshold: float, max_tokens: int, stream: bool) -> dict:
        return {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "stream": stream,
            "max_tokens": max_tokens,
            "prodtune": {"threshold": threshold},
        }

    def ask(self, question: str, model: str, threshold: float, max_tokens: int = 256) -> Answer:
        payload = self._payload(question, model, threshold, max_tokens, stream=False)
        r = self.http.post("/v1/chat/completions", json=payload, headers=self.headers)
        _raise_for(r)
        body = r.json()
        answer = Answer(text=body["choices"][0]["message"]["content"])
        answer.absorb(body.get("prodtune") or {})
        return answer

    def ask_stream(
        self, question: str, model: str, threshold: float, answer: Answer, max_tokens: int = 256
    ) -> Iterator[str]:
        """Yield answer pieces as they arrive; `answer` is filled with the text, route and sources."""
        payload = self._payload(question, model, threshold, max_tokens, stream=True)
        with self.http.stream("POST", "/v1/chat/completions", json=payload, headers=self.headers) as r:
            _raise_for(r)
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise ApiError(502, event["error"]["message"])
                if "prodtune" in event:
                    answer.absorb(event["prodtune"])
                piece = event["choices"][0]["delta"].get("content")
                if piece:
                    answer.text += piece
                    yield piece
