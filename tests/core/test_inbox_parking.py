"""Poison events end: a handler error parks an event after MAX_HANDLER_FAILURES tries; a
transient one (Stripe or the database away) only after TRANSIENT_PARK_AFTER; a parked event
is listed and comes back once replayed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.runtime import build_registry
from core.audit import AuditEntry
from core.clock import FrozenClock
from core.db import session_factory
from core.inbox import (
    MAX_HANDLER_FAILURES,
    HandlerContext,
    HandlerRegistry,
    WebhookEvent,
    backoff,
    event_row_id,
    process_due,
    process_event,
    store_event,
)
from core.inbox_admin import (
    FailedState,
    WebhookEventNotReplayable,
    failed_events,
    parked_count,
    replay,
)
from core.inbox_failures import TRANSIENT_PARK_AFTER, FailureKind, classify, redact
from core.settings import load_settings
from core.stripe_errors import StripeOutcomeUnknown, StripeRefused
from core.stripe_types import StripeEvent

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FAR = timedelta(days=3650)  # process_due "now": every backoff is over


def _event(event_id: str, type: str = "test.poison", obj: dict[str, Any] | None = None) -> Any:
    return StripeEvent.from_dict(
        {
            "id": event_id,
            "object": "event",
            "type": type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj if obj is not None else {"id": "obj_1", "object": "thing"}},
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


def _raising(error: BaseException, calls: list[str]) -> Any:
    async def handler(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        calls.append(event.id)
        raise error

    return handler


async def _run_due(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    clock: FrozenClock,
    row_id: int,
) -> str:
    """One retry pass at the moment the event is next due (the clock moves there)."""
    row = await _row(factory, row_id)
    if row.next_attempt_at is not None:
        clock.set(max(clock.now(), row.next_attempt_at))
    await process_due(factory, registry, ctx, now=clock.now())
    return (await _row(factory, row_id)).status


async def test_a_handler_that_always_raises_is_parked_after_the_limit_with_backoff(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, clock: FrozenClock
) -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register("test.poison", _raising(KeyError("charge"), calls))
    row_id = await _store(factory, _event("evt_poison"))
    assert await process_event(factory, registry, ctx, row_id) == "failed"
    for n in range(2, MAX_HANDLER_FAILURES):
        row = await _row(factory, row_id)
        assert row.status == "failed" and row.handler_failures == n - 1
        assert row.next_attempt_at == clock.now() + backoff(n - 1)  # the existing backoff
        assert await _run_due(factory, registry, ctx, clock, row_id) == "failed"
    assert await _run_due(factory, registry, ctx, clock, row_id) == "parked"
    row = await _row(factory, row_id)
    assert row.attempts == MAX_HANDLER_FAILURES == len(calls)
    assert row.next_attempt_at is None and row.parked_at == clock.now()
    assert row.first_attempt_at == NOW and row.last_attempt_at == clock.now()
    assert "KeyError" in (row.last_error or "")
    # Terminal: no retry job, however late, and no redelivery runs it again.
    assert await process_due(factory, registry, ctx, now=clock.now() + FAR) == 0
    assert await process_event(factory, registry, ctx, row_id) == "skipped"
    assert len(calls) == MAX_HANDLER_FAILURES
    async with factory() as db:
        assert await parked_count(db) == 1


async def test_a_refund_event_missing_what_its_handler_needs_ends_at_once(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    """The real handlers, a signed-looking refund.created whose object has no id: the
    handler takes only an id from the body (core/stripe_reread.py), finds none, books
    nothing and the event is done; it is never retried (the parking above is for
    handlers that raise)."""
    registry = build_registry()
    row_id = await _store(factory, _event("evt_refund_broken", "refund.created", {"amount": 1}))
    assert await process_event(factory, registry, ctx, row_id) == "processed"
    row = await _row(factory, row_id)
    assert row.next_attempt_at is None and row.handler_failures == 0


@pytest.mark.parametrize(
    "error",
    [
        StripeOutcomeUnknown("Stripe HTTP 503: try later", http_status=503),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server gone")),
        TimeoutError("handler ran out of time"),
    ],
    ids=["stripe_unknown", "database_away", "timeout"],
)
async def test_transient_failures_do_not_park_until_they_have_lasted_a_week(
    factory: async_sessionmaker[AsyncSession],
    ctx: HandlerContext,
    clock: FrozenClock,
    error: BaseException,
) -> None:
    assert classify(error) is FailureKind.TRANSIENT
    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register("test.poison", _raising(error, calls))
    row_id = await _store(factory, _event("evt_outage"))
    assert await process_event(factory, registry, ctx, row_id) == "failed"
    for _ in range(3 * MAX_HANDLER_FAILURES):  # far more tries than a handler error gets
        assert await _run_due(factory, registry, ctx, clock, row_id) == "failed"
    row = await _row(factory, row_id)
    assert row.handler_failures == 0 and row.transient_failures == 3 * MAX_HANDLER_FAILURES + 1
    assert row.next_attempt_at is not None and clock.now() - NOW < TRANSIENT_PARK_AFTER
    while clock.now() - NOW < TRANSIENT_PARK_AFTER:
        status = await _run_due(factory, registry, ctx, clock, row_id)
        assert status == ("parked" if clock.now() - NOW >= TRANSIENT_PARK_AFTER else "failed")
    assert (await _row(factory, row_id)).status == "parked"


async def test_a_refusal_is_a_handler_error_and_a_blip_does_not_reset_its_count(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, clock: FrozenClock
) -> None:
    errors: list[BaseException] = [StripeRefused("resource_missing", "No such refund", 404)] * 3
    errors += [StripeOutcomeUnknown("timeout")] * 2
    errors += [StripeRefused("resource_missing", "No such refund", 404)] * MAX_HANDLER_FAILURES

    async def handler(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        raise errors.pop(0)

    registry = HandlerRegistry()
    registry.register("test.poison", handler)
    row_id = await _store(factory, _event("evt_mixed"))
    status = await process_event(factory, registry, ctx, row_id)
    while status != "parked":
        status = await _run_due(factory, registry, ctx, clock, row_id)
    row = await _row(factory, row_id)
    assert (row.handler_failures, row.transient_failures) == (MAX_HANDLER_FAILURES, 2)


async def test_an_error_whose_message_postgres_cannot_store_still_counts(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    """A NUL in the message (TEXT refuses it) or a __str__ that raises kept the failure
    from being recorded at all: the event came back after every lease, uncounted."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    for i, error in enumerate([ValueError("bad \x00 byte"), Unprintable()]):
        registry = HandlerRegistry()
        registry.register("test.poison", _raising(error, []))
        row_id = await _store(factory, _event(f"evt_nul_{i}"))
        assert await process_event(factory, registry, ctx, row_id) == "failed"
        row = await _row(factory, row_id)
        assert row.attempts == 1 and row.handler_failures == 1
        assert "\x00" not in (row.last_error or "") and type(error).__name__ in (
            row.last_error or ""
        )


async def test_a_handler_that_hangs_times_out_instead_of_holding_the_drain(
    factory: async_sessionmaker[AsyncSession],
    ctx: HandlerContext,
) -> None:
    ctx = HandlerContext(
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=load_settings(webhook_handler_timeout_seconds=0.05),
    )
    never = asyncio.Event()

    async def hangs(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        await never.wait()

    registry = HandlerRegistry()
    registry.register("test.poison", hangs)
    row_id = await _store(factory, _event("evt_hang"))
    assert await process_event(factory, registry, ctx, row_id) == "failed"
    row = await _row(factory, row_id)
    assert row.transient_failures == 1 and "TimeoutError" in (row.last_error or "")


async def test_secrets_never_reach_the_stored_error(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext
) -> None:
    leak = (
        "Invalid API Key provided: sk_live_51Habc123XYZ; db postgresql://app:hunter2@db:5432/x;"
        " whsec_abcdef0123 Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl password=pw1"
    )
    registry = HandlerRegistry()
    registry.register("test.poison", _raising(RuntimeError(leak), []))
    row_id = await _store(factory, _event("evt_secret"))
    await process_event(factory, registry, ctx, row_id)
    stored = (await _row(factory, row_id)).last_error or ""
    for secret in ("51Habc123XYZ", "hunter2", "abcdef0123", "eyJhbGciOi", "pw1"):
        assert secret not in stored, stored
    assert "sk_live_[redacted]" in stored and "RuntimeError" in stored
    assert redact("x" * 5000, limit=300) == "x" * 299 + "…"


async def test_a_replayed_event_is_processed_once_more_and_a_relapse_parks_at_once(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, clock: FrozenClock
) -> None:
    fixed = False
    done: list[str] = []

    async def handler(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        if not fixed:
            raise KeyError("charge")
        done.append(event.id)

    registry = HandlerRegistry()
    registry.register("test.poison", handler)
    row_ids = [await _store(factory, _event(f"evt_replay_{i}")) for i in range(2)]
    for row_id in row_ids:
        status = await process_event(factory, registry, ctx, row_id)
        while status != "parked":
            status = await _run_due(factory, registry, ctx, clock, row_id)
    async with factory() as db:
        listed = await failed_events(db, state=FailedState.PARKED)
    assert [e.event_id for e in listed] == ["evt_replay_1", "evt_replay_0"]  # newest first

    # Replayed while still broken: one more failure parks it again, no new hour of tries.
    async with factory() as db, db.begin():
        again = await replay(db, event_id="evt_replay_0", now=clock.now(), actor_user_id=None)
    assert again.replayed and again.event.status == "pending" and again.event.replays == 1
    await process_due(factory, registry, ctx, now=clock.now())
    row = await _row(factory, row_ids[0])
    assert row.status == "parked" and row.handler_failures == 1

    fixed = True
    async with factory() as db, db.begin():
        await replay(db, event_id="evt_replay_0", now=clock.now(), actor_user_id=None)
        second = await replay(db, event_id="evt_replay_0", now=clock.now(), actor_user_id=None)
    assert not second.replayed  # queued already: nothing changes
    assert await process_due(factory, registry, ctx, now=clock.now()) == 1
    assert done == ["evt_replay_0"] and (await _row(factory, row_ids[0])).status == "processed"
    async with factory() as db, db.begin():
        with pytest.raises(WebhookEventNotReplayable):
            await replay(db, event_id="evt_replay_0", now=clock.now(), actor_user_id=None)
    async with factory() as db:
        audited = await db.scalar(select(func.count()).where(AuditEntry.action == "webhook.replay"))
        assert audited == 2 and await parked_count(db) == 1


async def test_the_handler_failure_limit_is_a_setting(
    factory: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    """COACHPAY_WEBHOOK_MAX_HANDLER_FAILURES=2: the second handler error parks the event."""
    ctx = HandlerContext(
        gateway=None,  # type: ignore[arg-type]
        clock=clock,
        settings=load_settings(webhook_max_handler_failures=2),
    )
    registry = HandlerRegistry()
    registry.register("test.poison", _raising(RuntimeError("boom"), []))
    row_id = await _store(factory, _event("evt_limit_two"))
    assert await process_event(factory, registry, ctx, row_id) == "failed"
    clock.advance(timedelta(hours=1))
    assert await process_event(factory, registry, ctx, row_id) == "parked"
    assert (await _row(factory, row_id)).handler_failures == 2
