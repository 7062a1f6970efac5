"""Process-local Prometheus metrics of the core layer: every Stripe call.

Counted in the gateway's one choke point (``StripeGateway._call``); api.metrics
serves them with the rest at ``GET /metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Histogram

STRIPE_REQUESTS = Counter(
    "coachpay_stripe_requests",
    "Stripe API calls by gateway method and outcome (ok, or the error class raised).",
    ["method", "outcome"],
)
STRIPE_DURATION = Histogram(
    "coachpay_stripe_request_duration_seconds",
    "Time of a Stripe call, retries and their backoff included.",
    ["method"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
STRIPE_RETRIES = Counter(
    "coachpay_stripe_retries",
    "Attempts of Stripe calls repeated after a transient failure.",
    ["method"],
)


def gateway_method(fn: Callable[..., Any]) -> str:
    """The gateway method a ``_call`` lambda was written in (``create_transfer``):
    from its qualified name, so no call site has to name itself."""
    qualname = getattr(fn, "__qualname__", "")
    outer = qualname.rsplit(".<locals>", 1)[0]
    return outer.rsplit(".", 1)[-1] or "unknown"


@contextmanager
def observe_stripe_call(
    fn: Callable[[], Awaitable[Any]],
) -> Iterator[Callable[[], Awaitable[Any]]]:
    """Yields ``fn`` wrapped to count its attempts; on exit records the call's outcome,
    its duration and its retries."""
    method = gateway_method(fn)
    attempts = 0

    async def attempt() -> Any:
        nonlocal attempts
        attempts += 1
        return await fn()

    outcome = "ok"
    started = time.perf_counter()
    try:
        yield attempt
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        STRIPE_REQUESTS.labels(method, outcome).inc()
        STRIPE_DURATION.labels(method).observe(time.perf_counter() - started)
        if attempts > 1:
            STRIPE_RETRIES.labels(method).inc(attempts - 1)
