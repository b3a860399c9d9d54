"""API keys and their rate limits.

Keys come from the environment or a mounted Kubernetes Secret, never from a file in the image:
- `PRODTUNE_API_KEY`: one key (named "default");
- `PRODTUNE_API_KEYS`: several, comma-separated, each `name=key` (or a bare key, named by position);
- `PRODTUNE_API_KEYS_DIR`: a directory where each file is one key and its name the key's name (how a
  Secret with several keys is mounted as a volume).
Every key has its own token bucket (`rate_per_minute`, `rate_burst`): one busy client cannot use up
another's budget. Buckets live in the process, so with N replicas a key gets N times its rate.
Logs name the key, never its value; comparison is constant-time.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request

from components.common.errors import InputError
from components.common.ratelimit import KeyedBuckets, retry_after_header
from serving.api.errors import ApiError
from serving.api.settings import ApiSettings


def load_keys(settings: ApiSettings) -> dict[str, bytes]:
    """Key name -> key bytes, from every source the settings name; at least one is required."""
    keys: dict[str, bytes] = {}
    if settings.key is not None and settings.key.get_secret_value().strip():
        keys["default"] = settings.key.get_secret_value().strip().encode()
    if settings.keys is not None:
        for i, item in enumerate(p.strip() for p in settings.keys.get_secret_value().split(",")):
            if item:
                name, sep, value = item.partition("=")
                name, value = (name.strip(), value.strip()) if sep else (f"key-{i + 1}", item)
                if not value:
                    raise InputError(f"API key '{name}' is empty", field="keys")
                keys[name] = value.encode()
    if settings.keys_dir is not None:
        keys.update(_keys_from_dir(settings.keys_dir))
    if not keys:
        raise InputError(
            "no API key is set (PRODTUNE_API_KEY, PRODTUNE_API_KEYS or PRODTUNE_API_KEYS_DIR): "
            "the API refuses to run without a key",
            field="key",
        )
    return keys


def _keys_from_dir(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise InputError("API keys directory not found", path=directory)
    keys = {}
    for path in sorted(directory.iterdir()):
        # Kubernetes mounts Secret files through ..data symlinks; skip those bookkeeping entries.
        if path.name.startswith(".") or not path.is_file():
            continue
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise InputError("API key file is empty", path=path)
        keys[path.name] = value.encode()
    return keys


class KeyRing:
    """Checks `Authorization: Bearer <key>` against every key and takes from that key's bucket."""

    def __init__(self, settings: ApiSettings) -> None:
        self.keys = load_keys(settings)
        self.buckets = KeyedBuckets(settings.rate_per_minute, settings.rate_burst)

    def identify(self, token: str) -> str | None:
        given = token.strip().encode()
        found = None
        for name, key in self.keys.items():  # no early exit: the time taken does not tell which matched
            if hmac.compare_digest(given, key):
                found = name
        return found

    def authorize(self, request: Request) -> str:
        """The key's name, or ApiError 401 (no or wrong key) / 429 (its bucket is empty)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        name = self.identify(token) if scheme.lower() == "bearer" else None
        if name is None:
            raise ApiError(
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                "authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        wait = self.buckets.take(name)
        if wait > 0:
            raise ApiError(
                429,
                f"rate limit exceeded for API key '{name}'",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry_after_header(wait)},
            )
        request.state.api_key_name = name
        return name
