"""Errors a chat backend raises, so the API can map them to HTTP statuses without knowing the backend."""

from __future__ import annotations


class BackendError(RuntimeError):
    """The model server or library failed on a request (the API answers 502)."""


class BackendUnavailable(BackendError):
    """The model cannot be reached or loaded at all (the API answers 503)."""
