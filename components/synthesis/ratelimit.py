"""Client-side rate limit in requests/min and tokens/min (token buckets of
`components.common.ratelimit`, the class the API's per-key limits use too), shared by all workers.

Providers enforce both limits; staying under them ourselves turns most 429s into short local waits.
Tokens are not known before a call, so a request reserves an estimate and `settle` corrects the
bucket with the real usage afterwards (an overdraft then delays the next requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from components.common.ratelimit import TokenBucket

__all__ = ["RateLimiter", "TokenBucket"]


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
