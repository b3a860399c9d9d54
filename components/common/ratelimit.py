"""One in-process token bucket for every limit we enforce: the teacher's requests/min and tokens/min
(synthesis) and each API key's requests/min (serving).

A bucket holds up to `capacity` units and refills at `rate_per_min / 60` units per second. Callers ask
how long until an amount is available (`wait_time`), `take` it (an overdraft is allowed: it delays the
next callers), and may `give_back` an over-estimate. `KeyedBuckets` keeps one bucket per key.

Limits are per process: with N replicas of the API, each key may make N times its rate in all.
Maintained libraries were considered: `limits`' moving window stores one entry per unit of cost (a
tokens/min limit would keep ~10^5 timestamps per window) and its fixed window allows double bursts at
the window edge; `aiolimiter` is asyncio-only and cannot give back an estimate. A token bucket is the
semantics both callers need, and it is twenty lines.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate_per_min` units per minute, up to `capacity` (default one minute's worth); None: unlimited."""

    def __init__(
        self,
        rate_per_min: float | None,
        clock: Callable[[], float] = time.monotonic,
        *,
        capacity: float | None = None,
    ) -> None:
        self.rate = rate_per_min / 60.0 if rate_per_min else None
        self.capacity = float(capacity if capacity is not None else (rate_per_min or 0))
        self.level = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()  # API requests take from worker threads

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self.level = min(self.capacity, self.level + (now - self._last) * self.rate)
        self._last = now

    def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until `amount` is available (0 if now). Amounts above capacity wait for a full bucket."""
        if self.rate is None:
            return 0.0
        with self._lock:
            self._refill()
            need = min(amount, self.capacity) - self.level
        return max(0.0, need / self.rate)

    def take(self, amount: float = 1.0) -> None:
        if self.rate is not None:
            with self._lock:
                self._refill()
                self.level -= amount

    def try_take(self, amount: float = 1.0) -> float:
        """Take `amount` if it is there now and return 0; else take nothing and return the wait in seconds."""
        if self.rate is None:
            return 0.0
        with self._lock:
            self._refill()
            if self.level >= min(amount, self.capacity):
                self.level -= amount
                return 0.0
            return (min(amount, self.capacity) - self.level) / self.rate

    def give_back(self, amount: float) -> None:
        if self.rate is not None:
            with self._lock:
                self._refill()
                self.level = min(self.capacity, self.level + amount)


class KeyedBuckets:
    """One `TokenBucket` per key (an API key's name), created on first use with the same limits."""

    def __init__(
        self, rate_per_min: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_min, self.capacity, self._clock = rate_per_min, capacity, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, key: str) -> TokenBucket:
        with self._lock:
            if key not in self._buckets:
                self._buckets[key] = TokenBucket(self.rate_per_min, self._clock, capacity=self.capacity)
            return self._buckets[key]

    def take(self, key: str) -> float:
        """Take one request for `key`: 0 when allowed, else the seconds until it would be."""
        return self.bucket(key).try_take(1.0)


def retry_after_header(wait_s: float) -> str:
    """An HTTP Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
