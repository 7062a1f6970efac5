"""Refunds Stripe reports failed: at once, later, or before we saw them succeed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from core.inbox import HandlerContext
from core.stripe_gateway import StripeGateway
from core.stripe_types import Refund as StripeRefund
from emulator.server import EmulatorServer
from ledger.accounts import Kind, balance
from ledger.models import Earning, LedgerTransaction
from sessions.audit import Actor
from sessions.models import BookingEvent
from sessions.refunds import refund_booking
from tests.sessions.helpers import (
    coach_balance,
    count,
    deliver,
    event_mark,
    events_since,
    paid_booking,
    platform_accounts,
    trial_balance,
)


async def test_refund_that_fails_later_is_reversed(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    """refund.updated with status failed: Stripe gave the money back to the platform."""
    booking, coach, mentee = await paid_booking(db, ctx, emulator)
    p = await platform_accounts(db)
    stripe_before = await balance(db, p.stripe)
    row = await refund_booking(
        db,
        booking_id=booking.id,
        actor=Actor.user(mentee, "mentee"),
        amount=3000,
        gateway=ctx.gateway,
        clock=ctx.clock,
    )
    assert await coach_balance(db, coach, Kind.PENDING) == -5600
    # The card network returns the refund: Stripe fails it and says so twice.
    mark = event_mark(emulator)
    emulator.control(
        "POST",
        f"refunds/{row.stripe_refund_id}/fail",
        {"failure_reason": "expired_or_canceled_card"},
    )
    events = [e for e in events_since(emulator, mark) if e.type.startswith("refund.")]
    assert [e.type for e in events] == ["refund.updated", "refund.failed"]
    await deliver(db, ctx, events + events)  # twice: reversed once
    await db.refresh(booking)
    await db.refresh(row)
    assert booking.status == "paid" and booking.amount_refunded == 0
    assert row.status == "failed"
    assert await coach_balance(db, coach, Kind.PENDING) == -8000
    assert await balance(db, p.fees) == -2000
    assert await balance(db, p.stripe) == stripe_before
    earning = (
        await db.execute(select(Earning).where(Earning.booking_id == booking.id))
    ).scalar_one()
    assert earning.reduced_before_release == 0 and earning.status == "pending"
    causes = (
        (await db.execute(select(BookingEvent.cause).where(BookingEvent.booking_id == booking.id)))
        .scalars()
        .all()
    )
    assert "refund_failed" in causes
    assert await trial_balance(db) == 0
    # What failed counts as refunded no more, and asking again for the same
    # amount is a new refund at Stripe (not the failed one replayed by its key).
    again = await refund_booking(
        db,
        booking_id=booking.id,
        actor=Actor.user(mentee, "mentee"),
        amount=3000,
        gateway=ctx.gateway,
        clock=ctx.clock,
    )
    assert again.stripe_refund_id != row.stripe_refund_id
    await db.refresh(booking)
    assert booking.status == "partially_refunded" and booking.amount_refunded == 3000


class _FailingRefunds(StripeGateway):
    async def create_refund(self, **kwargs: Any) -> StripeRefund:
        return StripeRefund(
            id="re_sync_failed",
            amount=int(kwargs["amount"]),
            currency="usd",
            charge_id=None,
            payment_intent_id=str(kwargs["payment_intent"]),
            status="failed",
            metadata={},
            failure_reason="unknown",
        )


async def test_refund_failed_at_once_is_a_conflict_and_books_nothing(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, _, mentee = await paid_booking(db, ctx, emulator)
    before = await count(db, LedgerTransaction)
    gw = _FailingRefunds("sk_test_sessions", api_base=emulator.base_url, max_retries=0)
    try:
        with pytest.raises(Conflict):
            await refund_booking(
                db,
                booking_id=booking.id,
                actor=Actor.user(mentee, "mentee"),
                amount=100,
                gateway=gw,
                clock=ctx.clock,
            )
    finally:
        await gw.aclose()
    assert await count(db, LedgerTransaction) == before
    await db.refresh(booking)
    assert booking.amount_refunded == 0


async def test_refund_failed_event_before_created_books_nothing(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    """A dashboard refund that failed: its refund.failed arrives before refund.created,
    whose body still says succeeded. Stripe says failed: nothing is booked, either way round."""
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    mark = event_mark(emulator)
    made = await ctx.gateway.create_refund(
        payment_intent=booking.payment_intent_id,
        amount=4000,
        metadata={},
        idempotency_key=f"dash-ooo-{booking.id}",
    )
    emulator.control("POST", f"refunds/{made.id}/fail", {"failure_reason": "declined"})
    events = {e.type: e for e in events_since(emulator, mark)}
    assert events["refund.created"].data_object["status"] == "succeeded"  # a stale snapshot
    await deliver(
        db,
        ctx,
        [events["refund.failed"], events["refund.created"], events["charge.refunded"]],
    )
    await db.refresh(booking)
    assert booking.status == "paid" and booking.amount_refunded == 0
    assert await coach_balance(db, coach, Kind.PENDING) == -8000
    assert await trial_balance(db) == 0
