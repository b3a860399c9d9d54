"""Client-side rate limit in requests/min and tokens/min (token buckets), shared by all workers.

Providers enforce both limits; staying under them ourselves turns most 429s into short local waits.
Tokens are not known before a call, so a request reserves an estimate and `settle` corrects the
bucket with the real usage afterwards (an overdraft then delays the next requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`rate_per_min` units per minute, bursts up to one minute's worth; None means unlimited."""

    def __init__(self, rate_per_min: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_min / 60.0 if rate_per_min else None
        self.capacity = float(rate_per_min or 0)
        self.level = self.capacity
        self._clock = clock
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self.level = min(self.capacity, self.level + (now - self._last) * self.rate)
        self._last = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` is available (0 if now). Amounts above capacity wait for a full bucket."""
        if self.rate is None:
            return 0.0
        self._refill()
        need = min(amount, self.capacity) - self.level
        return max(0.0, need / self.rate)

    def take(self, amount: float) -> None:
        if self.rate is not None:
            self._refill()
            self.level -= amount

    def give_back(self, amount: float) -> None:
        if self.rate is not None:
            self._refill()
            self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests/min and tokens/min limits; `acquire` waits until both allow the request."""

    def __init__(
        self,
        requests_per_min: float | None,
        tokens_per_min: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.requests = TokenBucket(requests_per_min, clock)
        self.tokens = TokenBucket(tokens_per_min, clock)
        self._sleep = sleep
        self._lock = asyncio.Lock()  # one waiter at a time keeps the order first-come, first-served
        self.waited_s = 0.0

    async def acquire(self, estimated_tokens: int) -> None:
        async with self._lock:
            while True:
                delay = max(self.requests.wait_time(1), self.tokens.wait_time(estimated_tokens))
                if delay <= 0:
                    break
                self.waited_s += delay
                await self._sleep(delay)
            self.requests.take(1)
            self.tokens.take(estimated_tokens)

    def settle(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        if actual_tokens is None:
            return
        diff = actual_tokens - estimated_tokens
        if diff > 0:
            self.tokens.take(diff)
        elif diff < 0:
            self.tokens.give_back(-diff)
