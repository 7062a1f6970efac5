"""Refunds made in Stripe's dashboard, seen through charge.refunded alone."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from ledger.accounts import Kind
from sessions.models import Refund
from tests.sessions.helpers import (
    coach_balance,
    count,
    deliver,
    event_mark,
    events_since,
    paid_booking,
    trial_balance,
)


async def test_charge_refunded_alone_books_a_dashboard_refund(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    """charge.refunded carries no refund list: the handler must list the charge's refunds."""
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    mark = event_mark(emulator)
    await ctx.gateway.create_refund(
        payment_intent=booking.payment_intent_id,
        amount=2500,
        metadata={},
        idempotency_key=f"dash-cr-{booking.id}",
    )
    events = events_since(emulator, mark)
    only = [e for e in events if e.type == "charge.refunded"]
    assert only and "refunds" not in only[0].data_object
    await deliver(db, ctx, only)
    await db.refresh(booking)
    assert booking.status == "partially_refunded" and booking.amount_refunded == 2500
    assert await coach_balance(db, coach, Kind.PENDING) == -6000
    # refund.created coming as well, and everything twice: booked once.
    await deliver(db, ctx, events + events)
    await db.refresh(booking)
    assert booking.amount_refunded == 2500
    assert await count(db, Refund) >= 1
    rows = (await db.execute(select(Refund).where(Refund.booking_id == booking.id))).scalars()
    assert [r.amount for r in rows] == [2500]
    assert await trial_balance(db) == 0
