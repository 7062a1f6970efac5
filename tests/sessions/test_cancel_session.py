"""Cancelling a session, at the service level: who may, races, refusals, money.

Real commits (``clean_engine``): ``settle_owed`` runs each booking in a
transaction of its own, as the route and the job do. A private emulator, as in
test_concurrency.py (the truncated database restarts ids at 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.db import session_factory
from core.inbox import HandlerContext
from core.stripe_errors import StripeAuthenticationError, StripeOutcomeUnknown
from emulator.server import EmulatorServer
from ledger.models import Earning
from payouts.jobs import run_release_job
from sessions.audit import Actor
from sessions.cancellation import (
    OWED_REFUND_HOLD,
    REFUSED_CAUSE,
    bookings_owed,
    cancel_session,
    hold_owed_earnings,
    settle_owed,
)
from sessions.errors import SessionNotCancellable, SessionNotFound
from sessions.models import Booking, Refund
from sessions.refunds import refund_booking
from sessions.webhooks import on_checkout_paid
from tests.sessions.helpers import (
    FailingRefunds,
    book_for,
    deliver,
    event_mark,
    events_since,
    in_tx,
    make_coach,
    make_session,
    make_user,
    pay,
    refusing_refunds,
    trial_balance,
)

T = TypeVar("T")


async def _paid_session(
    factory: async_sessionmaker[AsyncSession],
    ctx: HandlerContext,
    emulator: EmulatorServer,
    n: int,
) -> tuple[int, int, list[int]]:
    clock = ctx.clock
    assert isinstance(clock, FrozenClock)
    """(coach id, session id, ids of n paid bookings), committed."""

    async def setup(db: AsyncSession) -> tuple[int, int, list[Booking]]:
        now = ctx.clock.now()
        coach = await make_coach(db, ctx.settings, now)
        session = await make_session(db, coach, clock, capacity=n + 1)
        bookings = [
            await book_for(db, ctx, session.id, await make_user(db, "mentee", now))
            for _ in range(n)
        ]
        return coach, session.id, bookings

    coach, session_id, bookings = await in_tx(factory, setup)
    for booking in bookings:
        mark = event_mark(emulator)
        pay(emulator, booking)
        (done,) = [
            e for e in events_since(emulator, mark) if e.type == "checkout.session.completed"
        ]
        await in_tx(factory, lambda db, e=done: on_checkout_paid(db, e, ctx))  # type: ignore[misc]
    return coach, session_id, [b.id for b in bookings]


async def test_two_settle_runs_at_once_refund_each_booking_once(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    coach, session_id, ids = await _paid_session(factory, race_ctx, own_emulator, 3)
    await _cancel_by_coach(factory, session_id, coach, race_ctx.clock)
    runs = await asyncio.gather(
        *(settle_owed(factory, gateway=race_ctx.gateway, clock=race_ctx.clock) for _ in range(2))
    )
    assert sorted(runs[0].refunded + runs[1].refunded) == ids
    assert len(own_emulator.state.refunds) == 3
    async with factory() as db:
        statuses = (await db.execute(select(Booking.status).order_by(Booking.id))).scalars().all()
        assert statuses == ["refunded"] * 3
        assert await db.scalar(select(func.count()).select_from(Refund)) == 3
        earnings = (await db.execute(select(Earning))).scalars().all()
        assert {(e.status, e.reduced_before_release) for e in earnings} == {("cancelled", 8000)}
        assert await trial_balance(db) == 0
        assert await bookings_owed(db, limit=10) == []


async def test_only_its_coach_before_the_start_or_an_admin_may_cancel(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    coach, session_id, _ = await _paid_session(factory, race_ctx, own_emulator, 1)
    stranger = await in_tx(factory, lambda db: make_user(db, "coach", race_ctx.clock.now()))

    def cancel(actor: Actor, clock: Any) -> Callable[[AsyncSession], Awaitable[Any]]:
        return lambda db: cancel_session(db, session_id=session_id, actor=actor, clock=clock)

    with pytest.raises(SessionNotFound):
        await in_tx(factory, cancel(Actor.user(stranger, "coach"), race_ctx.clock))
    late = FrozenClock(race_ctx.clock.now())
    async with factory() as db:
        starts = await db.scalar(
            text("SELECT starts_at FROM coaching_sessions WHERE id = :s"), {"s": session_id}
        )
    late.set(starts)
    with pytest.raises(SessionNotCancellable):
        await in_tx(factory, cancel(Actor.user(coach, "coach"), late))
    async with factory() as db:
        assert await bookings_owed(db, limit=10) == []
    admin = await in_tx(factory, lambda db: make_user(db, "admin", race_ctx.clock.now()))
    row = await in_tx(factory, cancel(Actor.user(admin, "admin"), late))
    assert row.status == "cancelled"


async def _settle_then_release(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, booking_id: int
) -> Earning:
    """Stripe answering again: the settle run refunds the booking, then a release run;
    the earning as they leave it."""
    report = await settle_owed(factory, gateway=ctx.gateway, clock=ctx.clock)
    assert report.refunded == [booking_id]
    await run_release_job(factory, clock=ctx.clock, settings=ctx.settings)
    return await _earning(factory)


async def _cancel_by_coach(
    factory: async_sessionmaker[AsyncSession], session_id: int, coach: int, clock: Any
) -> None:
    await in_tx(
        factory,
        lambda db: cancel_session(
            db, session_id=session_id, actor=Actor.user(coach, "coach"), clock=clock
        ),
    )


async def _earning(factory: async_sessionmaker[AsyncSession]) -> Earning:
    async with factory() as db:
        return (await db.execute(select(Earning))).scalar_one()


async def test_a_share_whose_refund_is_owed_is_not_released_while_stripe_is_down(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    clock = race_ctx.clock
    assert isinstance(clock, FrozenClock)
    coach, session_id, (booking_id,) = await _paid_session(factory, race_ctx, own_emulator, 1)
    due = (await _earning(factory)).available_at
    await _cancel_by_coach(factory, session_id, coach, clock)
    # Due in days anyway: left as it is (renewed once it comes within half the hold).
    assert (await _earning(factory)).available_at == due
    down = FailingRefunds(race_ctx.gateway, StripeOutcomeUnknown("connection to Stripe failed"))
    # Stripe stays down past the earning's own release time: every settle run
    # (the job's, every few minutes) pushes the release on, so it never happens.
    for hours in (1, 30, 80, 100):
        clock.set(clock.now() + timedelta(hours=hours))
        report = await settle_owed(factory, gateway=down, clock=clock)  # type: ignore[arg-type]
        assert report.waiting == [booking_id]
        released = await run_release_job(factory, clock=clock, settings=race_ctx.settings)
        assert released.released == 0
    assert clock.now() > due and down.calls == 4
    assert (await _earning(factory)).status == "pending"
    # Stripe back: refunded in full, the earning cancelled, nothing ever released.
    earning = await _settle_then_release(factory, race_ctx, booking_id)
    assert (earning.status, earning.release_transaction_id) == ("cancelled", None)
    async with factory() as db:
        assert await trial_balance(db) == 0
        assert await hold_owed_earnings(db, now=clock.now() + 10 * OWED_REFUND_HOLD) == 0


async def test_a_refused_refund_waits_for_a_person_and_is_not_retried(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    coach, session_id, (booking_id,) = await _paid_session(factory, race_ctx, own_emulator, 1)
    await _cancel_by_coach(factory, session_id, coach, race_ctx.clock)
    refusing = refusing_refunds(race_ctx.gateway)
    report = await settle_owed(factory, gateway=refusing, clock=race_ctx.clock)  # type: ignore[arg-type]
    assert report.refused == [booking_id] and report.refunded == []
    again = await settle_owed(factory, gateway=refusing, clock=race_ctx.clock)  # type: ignore[arg-type]
    assert again.refused == [] and refusing.calls == 1
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.status == "paid"
        causes = (
            await db.execute(
                text("SELECT cause FROM booking_events WHERE booking_id = :b ORDER BY id"),
                {"b": booking_id},
            )
        ).scalars()
        assert list(causes)[-1] == REFUSED_CAUSE
        # No longer the job's to retry, but the booking still holds the mentee's
        # money: its share stays held back until a person refunds it.
        later = race_ctx.clock.now() + 10 * OWED_REFUND_HOLD
        assert await hold_owed_earnings(db, now=later) == 1
        assert await db.scalar(select(func.count()).select_from(Refund)) == 0
        assert await trial_balance(db) == 0
    assert own_emulator.state.refunds == {}


async def test_a_refund_failing_after_the_cancellation_holds_the_share_again(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    """The share came back to pending long after its release date: it must wait for
    the settle job's new refund, not be released at the next run."""
    factory = session_factory(clean_engine)
    clock = race_ctx.clock
    assert isinstance(clock, FrozenClock)
    coach, session_id, (booking_id,) = await _paid_session(factory, race_ctx, own_emulator, 1)
    admin = await in_tx(factory, lambda db: make_user(db, "admin", clock.now()))
    first = await in_tx(
        factory,
        lambda db: refund_booking(
            db,
            booking_id=booking_id,
            actor=Actor.user(admin, "admin"),
            amount=3000,
            gateway=race_ctx.gateway,
            clock=clock,
        ),
    )
    await _cancel_by_coach(factory, session_id, coach, clock)
    assert (await settle_owed(factory, gateway=race_ctx.gateway, clock=clock)).refunded == [
        booking_id
    ]
    assert (await _earning(factory)).status == "cancelled"  # nothing left for the coach
    clock.set(clock.now() + timedelta(days=30))
    mark = event_mark(own_emulator)
    own_emulator.control("POST", f"refunds/{first.stripe_refund_id}/fail")
    events = events_since(own_emulator, mark)
    await in_tx(factory, lambda db: deliver(db, race_ctx, events))
    earning = await _earning(factory)
    assert earning.status == "pending" and earning.available_at == clock.now() + OWED_REFUND_HOLD
    assert (await run_release_job(factory, clock=clock, settings=race_ctx.settings)).released == 0
    earning = await _settle_then_release(factory, race_ctx, booking_id)
    assert (earning.status, earning.release_transaction_id) == ("cancelled", None)
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.amount_refunded == booking.amount
        assert await trial_balance(db) == 0


async def test_a_bad_api_key_is_an_outage_not_a_refusal(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    coach, session_id, (booking_id,) = await _paid_session(factory, race_ctx, own_emulator, 1)
    await _cancel_by_coach(factory, session_id, coach, race_ctx.clock)
    bad_key = FailingRefunds(race_ctx.gateway, StripeAuthenticationError(None, "bad key", 401))
    report = await settle_owed(factory, gateway=bad_key, clock=race_ctx.clock)  # type: ignore[arg-type]
    assert (report.waiting, report.refused) == ([booking_id], [])
    async with factory() as db:
        assert await bookings_owed(db, limit=10) == [booking_id]  # the job tries again
