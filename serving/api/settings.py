"""API settings from the environment (env prefix `PRODTUNE_API_`); keys are `SecretStr`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODTUNE_API_", extra="ignore", frozen=True)

    # API keys (serving/api/auth.py): one key, several `name=key` pairs, or a mounted Secret directory.
    # The app refuses to start without at least one.
    key: SecretStr | None = None
    keys: SecretStr | None = None
    keys_dir: Path | None = None
    max_body_bytes: int = Field(default=65_536, ge=1024)  # larger bodies get 413 before parsing
    max_input_chars: int = Field(default=4_000, ge=1)  # the question itself
    rate_per_minute: float = Field(default=60.0, gt=0)  # token bucket refill, per API key, per replica
    rate_burst: int = Field(default=10, ge=1)  # bucket size
    # Similarity percent when a request names none; unset leaves the router's own default
    # (PRODTUNE_SERVING_SIMILARITY_THRESHOLD).
    default_threshold: float | None = Field(default=None, ge=0, le=100)
    max_tokens_limit: int = Field(default=1024, ge=1)
    default_max_tokens: int = Field(default=256, ge=1)
    # How often a running request checks whether its client is still there (then it is cancelled).
    disconnect_poll_s: float = Field(default=0.25, gt=0)
