"""Errors a chat backend raises, so the API can map them to HTTP statuses without knowing the backend."""

from __future__ import annotations


class BackendError(RuntimeError):
    """The model server or library failed on a request (the API answers 502)."""


class BackendUnavailable(BackendError):
    """The model cannot be reached or loaded at all (the API answers 503)."""


class BackendBusy(BackendUnavailable):
    """The model's queue is full (the API answers 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendCancelled(BackendError):
    """The request was cancelled (its client left) before the model started on it."""
