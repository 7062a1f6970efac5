"""Races with real commits: two refunds of one booking, one payment seen twice, the last seat.

Each worker is its own database transaction (``clean_engine``), as two API
replicas or two inbox workers would be. A private emulator: the truncated
database restarts ids at 1, and Stripe must not answer an idempotency key
derived from them with another test's object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import session_factory
from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from ledger.models import Earning, LedgerTransaction
from sessions.audit import Actor
from sessions.booking import get_booking
from sessions.catalog import lock_session
from sessions.errors import SessionFull
from sessions.models import Booking, Refund
from sessions.refund_intents import RefundInProgress
from sessions.refunds import refund_booking
from sessions.webhooks import on_checkout_expired, on_checkout_paid
from tests.sessions.helpers import (
    book_for,
    event_mark,
    events_since,
    in_tx,
    make_coach,
    make_session,
    make_user,
    pay,
    trial_balance,
)

T = TypeVar("T")


async def _world(
    factory: async_sessionmaker[AsyncSession],
    ctx: HandlerContext,
    emulator: EmulatorServer,
    *,
    paid: bool,
    capacity: int = 5,
) -> tuple[int, int, list[Any]]:
    """(booking id, session id, its payment events), committed."""

    async def setup(db: AsyncSession) -> tuple[int, int]:
        now = ctx.clock.now()
        coach = await make_coach(db, ctx.settings, now)
        session = await make_session(db, coach, ctx.clock, capacity=capacity)
        booking = await book_for(db, ctx, session.id, await make_user(db, "mentee", now))
        return booking.id, session.id

    booking_id, session_id = await in_tx(factory, setup)
    events: list[Any] = []
    if paid:
        async with factory() as db:
            booking = await db.get(Booking, booking_id)
            assert booking is not None
        mark = event_mark(emulator)
        pay(emulator, booking)
        events = [e for e in events_since(emulator, mark) if e.type == "checkout.session.completed"]
        await in_tx(factory, lambda db: on_checkout_paid(db, events[0], ctx))
    return booking_id, session_id, events


async def _settle(aws: list[Awaitable[T]]) -> list[T | BaseException]:
    return list(await asyncio.gather(*aws, return_exceptions=True))


async def test_two_concurrent_identical_full_refunds_are_one_refund(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    booking_id, _, _ = await _world(factory, race_ctx, own_emulator, paid=True)
    admin = await in_tx(factory, lambda db: make_user(db, "admin", race_ctx.clock.now()))

    async def refund(db: AsyncSession) -> Refund:
        return await refund_booking(
            db,
            booking_id=booking_id,
            actor=Actor.user(admin, "admin"),
            gateway=race_ctx.gateway,
            clock=race_ctx.clock,
        )

    # The same request twice at once: the second replays the first's intent (same key).
    results = await _settle([in_tx(factory, refund), in_tx(factory, refund)])
    assert all(isinstance(r, Refund) for r in results), results
    assert len({r.stripe_refund_id for r in results if isinstance(r, Refund)}) == 1
    assert len(own_emulator.state.refunds) == 1
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None
        assert booking.status == "refunded" and booking.amount_refunded == 10000
        assert await db.scalar(select(func.count()).select_from(Refund)) == 1
        assert await trial_balance(db) == 0


async def test_two_concurrent_different_partial_refunds_stay_within_the_payment(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    booking_id, _, _ = await _world(factory, race_ctx, own_emulator, paid=True)
    admin = await in_tx(factory, lambda db: make_user(db, "admin", race_ctx.clock.now()))

    def refund(amount: int, key: str) -> Callable[[AsyncSession], Awaitable[Refund]]:
        async def run(db: AsyncSession) -> Refund:
            return await refund_booking(
                db,
                booking_id=booking_id,
                actor=Actor.user(admin, "admin"),
                amount=amount,
                gateway=race_ctx.gateway,
                clock=race_ctx.clock,
                client_key=key,
            )

        return run

    # 6000 + 6000 > 10000, two distinct requests (two keys): exactly one may succeed;
    # the other is refused as too large, or as "in progress" while the first is open.
    results = await _settle([in_tx(factory, refund(6000, "a")), in_tx(factory, refund(6000, "b"))])
    names = sorted(type(r).__name__ for r in results)
    assert names in (["Refund", "RefundTooLarge"], ["Refund", "RefundInProgress"]), results
    # Two different refunds that fit: one at a time (one open intent per booking), so
    # one may be told to retry; retried, both are made, as two Stripe refunds.
    asks = {"c": refund(1000, "c"), "d": refund(3000, "d")}
    results = await _settle([in_tx(factory, asks["c"]), in_tx(factory, asks["d"])])
    for key, result in zip(asks, results, strict=True):
        if isinstance(result, RefundInProgress):
            result = await in_tx(factory, asks[key])
        assert isinstance(result, Refund), result
    assert sorted(r["amount"] for r in own_emulator.state.refunds.values()) == [1000, 3000, 6000]
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.amount_refunded == 10000
        rows = (await db.execute(select(Refund))).scalars().all()
        assert sum(r.platform_fee_part for r in rows) == 2000
        assert sum(r.coach_part for r in rows) == 8000
        earning = (await db.execute(select(Earning))).scalar_one()
        assert earning.reduced_before_release == 8000 and earning.status == "cancelled"
        assert await trial_balance(db) == 0


async def test_one_payment_processed_by_two_workers_at_once_is_booked_once(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    booking_id, _, _ = await _world(factory, race_ctx, own_emulator, paid=False)
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None
    mark = event_mark(own_emulator)
    pay(own_emulator, booking)
    (completed,) = [
        e for e in events_since(own_emulator, mark) if e.type == "checkout.session.completed"
    ]
    # The same payment event picked up by two workers (checkout.session.completed
    # and a late async_payment_succeeded look alike to the handler).
    results = await _settle(
        [in_tx(factory, lambda db: on_checkout_paid(db, completed, race_ctx)) for _ in range(2)]
    )
    assert results == [None, None]
    async with factory() as db:
        payments = await db.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.type == "session_payment")
        )
        assert payments == 1
        assert await db.scalar(select(func.count()).select_from(Earning)) == 1
        assert await db.scalar(select(func.count()).select_from(Refund)) == 0
        assert await trial_balance(db) == 0


async def test_last_seat_booked_by_two_mentees_at_once(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    factory = session_factory(clean_engine)
    _, session_id, _ = await _world(factory, race_ctx, own_emulator, paid=False, capacity=2)
    now = race_ctx.clock.now()
    mentees = [await in_tx(factory, lambda db: make_user(db, "mentee", now)) for _ in range(2)]
    results = await _settle(
        [in_tx(factory, lambda db, m=m: book_for(db, race_ctx, session_id, m)) for m in mentees]
    )
    assert sorted(type(r).__name__ for r in results) == ["Booking", "SessionFull"]
    assert any(isinstance(r, SessionFull) for r in results)
    async with factory() as db:
        assert await db.scalar(select(func.count()).select_from(Booking)) == 2


async def test_late_expired_event_and_a_payment_lock_in_the_same_order(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    """An ``expired`` that finds the session paid records the payment: it must take the
    session lock before the booking's, as record_payment and book do, or the two deadlock."""
    factory = session_factory(clean_engine)
    booking_id, session_id, _ = await _world(factory, race_ctx, own_emulator, paid=False)
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None
    mark = event_mark(own_emulator)
    pay(own_emulator, booking)
    (completed,) = [
        e for e in events_since(own_emulator, mark) if e.type == "checkout.session.completed"
    ]
    expired = type(completed).from_dict(
        {**completed.raw, "id": "evt_late_expired", "type": "checkout.session.expired"}
    )

    async def payment_worker(db: AsyncSession) -> None:
        # Holds the session lock as record_payment does, then wants the booking.
        await lock_session(db, session_id)
        await asyncio.sleep(0.5)
        await get_booking(db, booking_id, lock=True)

    async def expired_worker(db: AsyncSession) -> None:
        await asyncio.sleep(0.1)
        await on_checkout_expired(db, expired, race_ctx)

    results = await _settle([in_tx(factory, payment_worker), in_tx(factory, expired_worker)])
    assert results == [None, None]  # no deadlock victim
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.status == "paid"
