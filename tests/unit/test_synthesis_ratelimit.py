import asyncio

import pytest

from components.synthesis.ratelimit import RateLimiter, TokenBucket


class FakeClock:
    """Time that moves only when the limiter sleeps, so the test measures the limiter's waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(coro):
    return asyncio.run(coro)


def test_requests_per_minute_paces_after_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_min=60, tokens_per_min=None, clock=clock, sleep=clock.sleep)

    async def go():
        for _ in range(63):
            await limiter.acquire(10)

    run(go())
    # a full minute's bucket (60) goes at once, then one request per second
    assert clock.now == pytest.approx(3.0)


def test_tokens_per_minute_limit_and_settle_overdraft():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_min=None, tokens_per_min=600, clock=clock, sleep=clock.sleep)

    async def go():
        await limiter.acquire(600)  # the whole bucket
        limiter.settle(600, 900)  # the reply used 300 more than estimated: 300 tokens in debt
        await limiter.acquire(100)

    run(go())
    # 600 tpm = 10 tokens/s; from -300 to 100 takes 40 s
    assert clock.now == pytest.approx(40.0)
    assert limiter.waited_s == pytest.approx(40.0)


def test_settle_gives_back_unused_estimate():
    clock = FakeClock()
    bucket = TokenBucket(600, clock)
    bucket.take(500)
    bucket.give_back(400)
    assert bucket.wait_time(450) == 0.0


def test_unlimited_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(None, None, clock=clock, sleep=clock.sleep)

    async def go():
        await asyncio.gather(*(limiter.acquire(10**6) for _ in range(100)))

    run(go())
    assert clock.sleeps == []


def test_request_bigger_than_bucket_waits_for_full_bucket_not_forever():
    clock = FakeClock()
    bucket = TokenBucket(100, clock)
    bucket.take(100)
    assert bucket.wait_time(1000) == pytest.approx(60.0)
