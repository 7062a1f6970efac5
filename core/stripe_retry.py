"""The single retry layer for Stripe calls (the SDK's own retries are off).

Only transient failures are retried (connection errors and timeouts, 429,
5xx); a definite refusal is returned at once. Writes are safe to repeat
because every one carries an idempotency key: Stripe replays the first
result instead of applying the request twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stripe
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from core.stripe_errors import classify, is_retryable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    # Full-jitter exponential backoff: attempt n waits U(0, base * 2**n), at
    # most max_backoff. Tests pass base=0 so they run without sleeping.
    backoff_base: float = 0.5
    max_backoff: float = 20.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # injectable for tests

    def _wait(self) -> Callable[[RetryCallState], float]:
        jittered = wait_random_exponential(multiplier=self.backoff_base, max=self.max_backoff)

        def wait(state: RetryCallState) -> float:
            delay = jittered(state)
            # A 429 may say how long to back off; honour it (bounded), since
            # retrying sooner just burns another attempt.
            exc = state.outcome.exception() if state.outcome else None
            if self.backoff_base > 0 and isinstance(exc, stripe.RateLimitError):
                delay = max(delay, _retry_after(exc))
            return min(delay, self.max_backoff)

        return wait

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` with retries; raise a ``core.stripe_errors`` error on failure."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait(),
            retry=retry_if_exception(is_retryable),
            reraise=True,
            sleep=self.sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await fn()
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")


def _retry_after(exc: stripe.StripeError) -> float:
    raw = (exc.headers or {}).get("retry-after") or (exc.headers or {}).get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else 0.0
    except ValueError:
        return 0.0
