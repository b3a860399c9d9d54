"""OpenAI chat-completions request/response shapes, plus the `prodtune` extension fields.

Requests: `model`, `messages` (the last user message is the input), `stream`, `max_tokens`
(or `max_completion_tokens`), `temperature`; the similarity threshold (percent, 0-100) comes as
`"prodtune": {"threshold": 60}` or top-level `"similarity_threshold": 60`. Other OpenAI fields the
official clients send (`top_p`, `user`, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ProdtuneOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(default=None, ge=0, le=100)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None  # include_usage: a last chunk with `usage` (OpenAI's)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    n: int = Field(default=1, ge=1, le=1)
    similarity_threshold: float | None = Field(default=None, ge=0, le=100)
    prodtune: ProdtuneOptions | None = None

    @field_validator("messages")
    @classmethod
    def _has_user_message(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in messages):
            raise ValueError("messages must contain a non-empty user message")
        return messages

    def question(self) -> str:
        return next(
            m.text() for m in reversed(self.messages) if m.role == "user" and m.text().strip()
        ).strip()

    def threshold(self, default: float | None) -> float | None:
        if self.prodtune is not None and self.prodtune.threshold is not None:
            return self.prodtune.threshold
        return self.similarity_threshold if self.similarity_threshold is not None else default


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
