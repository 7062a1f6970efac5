"""The webhook inbox service: store once, process once under concurrency, retry with backoff."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.db import session_factory
from core.inbox import (
    CLAIM_LEASE,
    HandlerContext,
    HandlerRegistry,
    WebhookEvent,
    backoff,
    claim_due,
    drain,
    event_row_id,
    process_due,
    process_event,
    store_event,
)
from core.settings import load_settings
from core.stripe_types import StripeEvent

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _event(event_id: str, type: str = "test.ok") -> StripeEvent:
    return StripeEvent.from_dict(
        {
            "id": event_id,
            "object": "event",
            "type": type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": {"id": "obj_1", "object": "thing"}},
        }
    )


@pytest.fixture
def factory(clean_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(clean_engine)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def ctx(clock: FrozenClock) -> HandlerContext:
    return HandlerContext(gateway=None, clock=clock, settings=load_settings())  # type: ignore[arg-type]


async def _store(factory: async_sessionmaker[AsyncSession], event: StripeEvent) -> int:
    async with factory() as db, db.begin():
        assert await store_event(db, event=event, endpoint="platform", now=NOW)
        row_id = await event_row_id(db, event.id)
    assert row_id is not None
    return row_id


async def _row(factory: async_sessionmaker[AsyncSession], row_id: int) -> WebhookEvent:
    async with factory() as db:
        row = await db.get(WebhookEvent, row_id)
    assert row is not None
    return row


async def test_store_event_is_idempotent(factory: async_sessionmaker[AsyncSession]) -> None:
    event = _event("evt_a")
    async with factory() as db, db.begin():
        assert await store_event(db, event=event, endpoint="platform", now=NOW) is not None
        assert await store_event(db, event=event, endpoint="platform", now=NOW) is None
        rows = (await db.execute(select(WebhookEvent))).scalars().all()
    assert len(rows) == 1 and rows[0].status == "pending" and rows[0].attempts == 0


async def test_concurrent_processing_runs_the_handler_once(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    calls: list[str] = []

    async def slow(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        calls.append(event.id)
        await asyncio.sleep(0.2)  # hold the claim while the others try

    registry = HandlerRegistry()
    registry.register("test.ok", slow)
    row_id = await _store(factory, _event("evt_c"))
    outcomes = await asyncio.gather(
        *(process_event(factory, registry, ctx, row_id) for _ in range(4))
    )
    assert sorted(outcomes) == ["processed", "skipped", "skipped", "skipped"]
    assert calls == ["evt_c"]
    assert await process_event(factory, registry, ctx, row_id) == "skipped"


async def test_failure_rolls_back_effect_and_schedules_backoff(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, clock: FrozenClock
) -> None:
    async def broken(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        await db.execute(update(WebhookEvent).values(account="acct_written_by_handler"))
        raise ValueError("nope")

    registry = HandlerRegistry()
    registry.register("test.ok", broken)
    row_id = await _store(factory, _event("evt_f"))
    assert await process_event(factory, registry, ctx, row_id) == "failed"
    row = await _row(factory, row_id)
    assert row.account is None  # the handler's write was rolled back
    assert (
        row.status == "failed"
        and row.attempts == 1
        and "ValueError: nope" in (row.last_error or "")
    )
    assert row.next_attempt_at == clock.now() + backoff(1)
    assert await process_event(factory, registry, ctx, row_id) == "failed"
    row = await _row(factory, row_id)
    assert row.attempts == 2 and row.next_attempt_at == clock.now() + backoff(2)


async def test_process_due_is_bounded_and_only_due(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, clock: FrozenClock
) -> None:
    seen: list[str] = []

    async def ok(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        seen.append(event.id)

    registry = HandlerRegistry()
    registry.register("test.ok", ok)
    for i in range(5):
        await _store(factory, _event(f"evt_{i}"))
    # Stored events become due only after the grace period.
    assert await process_due(factory, registry, ctx, now=NOW) == 0
    later = NOW + timedelta(minutes=2)
    assert await process_due(factory, registry, ctx, now=later, batch=2) == 2
    assert await process_due(factory, registry, ctx, now=later, batch=100) == 3
    assert sorted(seen) == [f"evt_{i}" for i in range(5)]
    assert await process_due(factory, registry, ctx, now=later) == 0


async def test_unknown_type_ignored(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    row_id = await _store(factory, _event("evt_u", type="test.unheard.of"))
    assert await process_event(factory, HandlerRegistry(), ctx, row_id) == "ignored"
    assert (await _row(factory, row_id)).status == "ignored"


def test_backoff_grows_and_is_capped() -> None:
    values: list[Any] = [backoff(n) for n in (1, 2, 3, 30)]
    assert values[0] == timedelta(seconds=30) and values[1] == timedelta(seconds=60)
    assert values[2] == timedelta(seconds=120) and values[3] == timedelta(hours=6)


def test_registry_runs_handlers_in_order_without_duplicates() -> None:
    async def a(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None: ...
    async def b(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None: ...

    registry = HandlerRegistry()
    registry.register("x", a)
    registry.register("x", b)
    registry.register("x", a)
    assert registry.handlers_for("x") == (a, b)
    assert "x" in registry and "y" not in registry
    assert registry.handlers_for("y") == ()


async def _store_due_now(factory: async_sessionmaker[AsyncSession], n: int) -> None:
    async with factory() as db, db.begin():
        for i in range(n):
            event = _event(f"evt_now_{i}")
            await store_event(
                db, event=event, endpoint="platform", now=NOW, first_attempt_delay=timedelta(0)
            )


async def test_claims_are_disjoint_and_leased(
    factory: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    await _store_due_now(factory, 6)
    first, second = await asyncio.gather(
        claim_due(factory, now=NOW, batch=3), claim_due(factory, now=NOW, batch=3)
    )
    assert len(first) == len(second) == 3 and not set(first) & set(second)
    assert await claim_due(factory, now=NOW, batch=10) == []  # all leased
    # A worker that died: its lease runs out and the events are due again.
    assert len(await claim_due(factory, now=NOW + CLAIM_LEASE, batch=10)) == 6


async def test_drain_handles_new_events_promptly_once_each(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    seen: list[str] = []

    async def ok(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        seen.append(event.id)

    registry = HandlerRegistry()
    registry.register("test.ok", ok)
    stop = asyncio.Event()
    # Two drains (two workers) over one inbox, in batches smaller than the backlog.
    tasks = [
        asyncio.create_task(
            drain(factory, registry, ctx, stop=stop, batch=4, concurrency=2, idle_seconds=0.05)
        )
        for _ in range(2)
    ]
    try:
        await _store_due_now(factory, 10)
        for _ in range(100):
            if len(seen) >= 10:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert sorted(seen) == sorted(f"evt_now_{i}" for i in range(10))
    async with factory() as db:
        statuses = (await db.execute(select(WebhookEvent.status))).scalars().all()
    assert statuses == ["processed"] * 10


async def test_known_event_processing_skips_a_row_already_done(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    event = _event("evt_k", type="test.nobody")
    row_id = await _store(factory, event)
    registry = HandlerRegistry()
    assert await process_event(factory, registry, ctx, row_id, event=event) == "ignored"
    assert await process_event(factory, registry, ctx, row_id, event=event) == "skipped"
    row = await _row(factory, row_id)
    assert row.status == "ignored" and row.attempts == 1 and row.next_attempt_at is None
