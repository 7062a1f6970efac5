"""Outbox test helpers: events written as the triggers write them, endpoints, passes."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.outbox.delivery import DeliveryConfig, PassResult, deliver_pass
from core.outbox.endpoints import Guard, create_endpoint
from core.outbox.events import fan_out, fan_out_lag
from core.outbox.sender import new_client

Factory = async_sessionmaker[AsyncSession]


async def emit(
    factory: Factory,
    at: datetime,
    n: int = 1,
    *,
    type: str = "booking.paid",
    step: timedelta = timedelta(seconds=1),
) -> None:
    """``n`` events in one transaction through the triggers' own function, ``step`` apart."""
    async with factory() as db, db.begin():
        for i in range(n):
            await db.execute(
                text("SELECT outbox_emit(:t, :at, CAST(:d AS jsonb))"),
                {"t": type, "at": at + step * i, "d": json.dumps({"booking": {"id": i + 1}})},
            )


async def endpoint(
    factory: Factory, guard: Guard, clock: FrozenClock, url: str, **kw: Any
) -> tuple[int, str]:
    async with factory() as db, db.begin():
        ep, secret = await create_endpoint(
            db, url=url, guard=guard, actor_user_id=None, now=clock.now(), **kw
        )
    return ep.id, secret


async def drain(
    factory: Factory,
    clock: FrozenClock,
    config: DeliveryConfig,
    *,
    client: httpx.AsyncClient | None = None,
    max_passes: int = 200,
) -> list[PassResult]:
    """Passes until one finds nothing to do and every committed event is fanned out
    (the clock does not move)."""
    rng = random.Random(1)
    out = []
    own = client is None
    client = client or new_client(timeout=5)
    try:
        for _ in range(max_passes):
            result = await deliver_pass(factory, clock=clock, client=client, config=config, rng=rng)
            out.append(result)
            if not result.busy:
                async with factory() as db:
                    if await fan_out_lag(db) == 0:
                        return out
                await fan_out_all(factory, clock)
        raise AssertionError("the outbox did not drain")
    finally:
        if own:
            await client.aclose()


async def fan_out_all(factory: Factory, clock: FrozenClock, *, seconds: float = 60.0) -> None:
    """Fan out until the cursor reaches the last committed event. Polls the database
    while an older transaction elsewhere on the shared server holds events back."""
    deadline = time.monotonic() + seconds
    while True:
        async with factory() as db, db.begin():
            await fan_out(db, now=clock.now(), limit=1000)
        async with factory() as db:
            if await fan_out_lag(db) == 0:
                return
        if time.monotonic() > deadline:
            raise AssertionError("events stayed behind an open transaction")


async def deliveries(factory: Factory) -> list[Any]:
    async with factory() as db:
        return list((await db.execute(text("SELECT * FROM outbox_deliveries ORDER BY id"))).all())


async def log(factory: Factory) -> list[Any]:
    async with factory() as db:
        return list((await db.execute(text("SELECT * FROM outbox_attempts ORDER BY id"))).all())
