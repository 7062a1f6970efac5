"""The delivery loop ``coachpay serve`` / ``worker`` run: passes while there is work.

``deliver_due`` is the scheduled job's body (api/jobs.py runs it every
second; APScheduler's ``max_instances=1`` keeps runs from piling up);
``run_forever`` is the same as one long task, for a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from core.clock import Clock
from core.outbox.delivery import DeliveryConfig, Factory, deliver_pass
from core.outbox.events import prune
from core.outbox.sender import new_client

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0


async def deliver_due(
    factory: Factory,
    *,
    clock: Clock,
    config: DeliveryConfig,
    budget_seconds: float = 30.0,
) -> int:
    """Passes until nothing is due (or ``budget_seconds``): the scheduled job's body.

    Returns the deliveries made. Never raises: the next run tries again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_seconds
    delivered = 0
    made: list[httpx.AsyncClient] = []

    def client() -> httpx.AsyncClient:
        if not made:
            made.append(new_client(timeout=config.timeout, connections=config.concurrency))
        return made[0]

    try:
        while loop.time() < deadline:
            result = await deliver_pass(factory, clock=clock, client=client, config=config)
            delivered += result.delivered
            if not result.busy:
                async with factory() as db, db.begin():
                    await prune(db, now=clock.now())
                break
    except Exception:
        log.exception("webhook delivery pass failed; retried on the next run")
    finally:
        for c in made:
            await c.aclose()
    return delivered


async def run_forever(
    factory: Factory, *, clock: Clock, stop: asyncio.Event, config: DeliveryConfig
) -> None:
    """The delivery loop as one long task: passes back to back while there is work,
    a poll every POLL_SECONDS otherwise, until ``stop`` is set."""
    while not stop.is_set():
        await deliver_due(factory, clock=clock, config=config)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)
