"""How many requests one model serves at once, and how many may wait: a bounded queue per model.

A llama.cpp context generates one reply at a time (concurrency 1); an Ollama model serves
`OLLAMA_NUM_PARALLEL` replies at once, so its gate admits that many. Past `max_waiting` queued
requests the gate refuses at once (`BackendBusy`, which the API turns into 503 + Retry-After) rather
than letting waits grow without bound. A waiting request whose client left gives up its place.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from serving.llm.errors import BackendBusy, BackendCancelled


class Gate:
    def __init__(self, name: str, concurrency: int, max_waiting: int, retry_after_s: float = 1.0) -> None:
        if concurrency < 1 or max_waiting < 0:
            raise ValueError("concurrency must be >= 1 and max_waiting >= 0")
        self.name, self.concurrency, self.max_waiting = name, concurrency, max_waiting
        self.retry_after_s = retry_after_s
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0

    @contextlib.contextmanager
    def slot(self, cancel: threading.Event | None = None) -> Iterator[None]:
        with self._lock:
            if self.running >= self.concurrency and self.waiting >= self.max_waiting:
                raise BackendBusy(
                    f"{self.name}: {self.running} running and {self.waiting} queued requests (the limit)",
                    retry_after_s=self.retry_after_s,
                )
            self.waiting += 1
        try:
            while not self._slots.acquire(timeout=0.05):
                if cancel is not None and cancel.is_set():
                    raise BackendCancelled(f"{self.name}: the client left while queued")
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._slots.release()
