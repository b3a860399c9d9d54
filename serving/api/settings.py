"""API settings from the environment (env prefix `PRODTUNE_API_`); the key is a `SecretStr`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODTUNE_API_", extra="ignore", frozen=True)

    # PRODTUNE_API_KEY, from env or a Kubernetes Secret; the app refuses to start without one.
    key: SecretStr | None = None
    max_body_bytes: int = Field(default=65_536, ge=1024)  # larger bodies get 413 before parsing
    max_input_chars: int = Field(default=4_000, ge=1)  # the question itself
    rate_per_minute: float = Field(default=60.0, gt=0)  # token bucket refill, per API key
    rate_burst: int = Field(default=10, ge=1)  # bucket size
    # Similarity percent when a request names none; unset leaves the router's own default
    # (PRODTUNE_SERVING_SIMILARITY_THRESHOLD).
    default_threshold: float | None = Field(default=None, ge=0, le=100)
    max_tokens_limit: int = Field(default=1024, ge=1)
    default_max_tokens: int = Field(default=256, ge=1)
