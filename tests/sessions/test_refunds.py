from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from ledger.accounts import Kind, balance
from ledger.models import Earning, LedgerTransaction
from sessions.audit import Actor
from sessions.errors import NotYourBooking, RefundTooLarge, RefundWindowClosed
from sessions.models import Booking, Refund
from sessions.refunds import refund_booking
from tests.sessions.helpers import (
    book_for,
    coach_balance,
    count,
    deliver_new,
    event_mark,
    make_coach,
    make_session,
    make_user,
    pay,
    platform_accounts,
    trial_balance,
)


async def _paid(
    db: AsyncSession,
    ctx: HandlerContext,
    emulator: EmulatorServer,
    price: int = 10000,
    **kw: object,
) -> tuple[Booking, int, int]:
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock, price=price, **kw)
    booking = await book_for(db, ctx, session.id, mentee)
    mark = event_mark(emulator)
    pay(emulator, booking)
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    assert booking.status == "paid"
    return booking, coach, mentee


async def test_partial_refunds_reverse_exactly(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, mentee = await _paid(db, ctx, emulator, price=9999)
    actor = Actor.user(mentee, "mentee")
    mark = event_mark(emulator)
    for amount in (1, 3300, None):  # 1 cent, 33 %, the rest
        await refund_booking(
            db,
            booking_id=booking.id,
            actor=actor,
            amount=amount,
            gateway=ctx.gateway,
            clock=ctx.clock,
        )
    # Stripe's echoes of our refunds change nothing.
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    assert booking.status == "refunded" and booking.amount_refunded == 9999
    refunds = (
        (await db.execute(select(Refund).where(Refund.booking_id == booking.id))).scalars().all()
    )
    assert [r.amount for r in refunds] == [1, 3300, 6698]
    assert sum(r.platform_fee_part for r in refunds) == 2000  # round_half_even(9999 * 0.2)
    assert sum(r.coach_part for r in refunds) == 7999
    p = await platform_accounts(db)
    assert await balance(db, p.fees) == 0
    assert await coach_balance(db, coach, Kind.PENDING) == 0
    earning = (
        await db.execute(select(Earning).where(Earning.booking_id == booking.id))
    ).scalar_one()
    assert earning.status == "cancelled" and earning.reduced_before_release == 7999
    assert await trial_balance(db) == 0


async def test_refund_beyond_paid_is_409_and_writes_nothing(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, _, mentee = await _paid(db, ctx, emulator)
    before = (
        await count(db, LedgerTransaction),
        await count(db, Refund),
        len(emulator.state.refunds),
    )
    with pytest.raises(RefundTooLarge):
        await refund_booking(
            db,
            booking_id=booking.id,
            actor=Actor.user(mentee, "mentee"),
            amount=10001,
            gateway=ctx.gateway,
            clock=ctx.clock,
        )
    after = (
        await count(db, LedgerTransaction),
        await count(db, Refund),
        len(emulator.state.refunds),
    )
    assert after == before


async def test_refund_window_mentee_403_coach_allowed(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, mentee = await _paid(db, ctx, emulator, refund_window_hours=100)
    # The session starts in 72 h: the 100 h window has closed for the mentee.
    with pytest.raises(RefundWindowClosed):
        await refund_booking(
            db,
            booking_id=booking.id,
            actor=Actor.user(mentee, "mentee"),
            gateway=ctx.gateway,
            clock=ctx.clock,
        )
    other = await make_user(db, "mentee", ctx.clock.now())
    with pytest.raises(NotYourBooking):
        await refund_booking(
            db,
            booking_id=booking.id,
            actor=Actor.user(other, "mentee"),
            gateway=ctx.gateway,
            clock=ctx.clock,
        )
    row = await refund_booking(
        db,
        booking_id=booking.id,
        actor=Actor.user(coach, "coach"),
        amount=500,
        gateway=ctx.gateway,
        clock=ctx.clock,
    )
    assert row.amount == 500 and row.platform_fee_part == 100


async def test_refund_after_release_comes_from_available(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, _ = await _paid(db, ctx, emulator)
    earning = (
        await db.execute(select(Earning).where(Earning.booking_id == booking.id))
    ).scalar_one()
    # Released and paid out (the payouts package's work), along the earning's edges.
    for status in ("available", "paid"):
        earning.status = status
        await db.flush()
    ctx.clock.advance(timedelta(days=10))
    admin = await make_user(db, "admin", ctx.clock.now())
    row = await refund_booking(
        db,
        booking_id=booking.id,
        actor=Actor.user(admin, "admin"),
        gateway=ctx.gateway,
        clock=ctx.clock,
    )
    assert row.coach_account_kind == "available"
    assert await coach_balance(db, coach, Kind.AVAILABLE) == 8000  # the coach owes it back
    assert await trial_balance(db) == 0


async def test_dashboard_refund_via_webhook(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, _ = await _paid(db, ctx, emulator)
    mark = event_mark(emulator)
    await ctx.gateway.create_refund(
        payment_intent=booking.payment_intent_id,
        amount=2500,
        metadata={},
        idempotency_key=f"dash-{booking.id}",
    )
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    assert booking.status == "partially_refunded" and booking.amount_refunded == 2500
    assert await coach_balance(db, coach, Kind.PENDING) == -6000
    refund = (await db.execute(select(Refund).where(Refund.booking_id == booking.id))).scalar_one()
    assert refund.source == "stripe"


async def test_retry_with_client_key_after_webhook_booked_it_refunds_once(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    # The first request's refund was made and booked (here: by its own call,
    # as the webhook would after a timeout); the client, never having seen the
    # answer, sends the same request again with the same Idempotency-Key.
    booking, coach, _ = await _paid(db, ctx, emulator, price=10000)
    actor = Actor.user(coach, "coach")
    kw = {"booking_id": booking.id, "actor": actor, "amount": 2500, "gateway": ctx.gateway}
    first = await refund_booking(db, **kw, clock=ctx.clock, client_key="req-42")  # type: ignore[arg-type]
    again = await refund_booking(db, **kw, clock=ctx.clock, client_key="req-42")  # type: ignore[arg-type]
    assert again.stripe_refund_id == first.stripe_refund_id
    await db.refresh(booking)
    assert booking.amount_refunded == 2500
    refunds_at_stripe = [
        r
        for r in emulator.state.refunds.values()
        if r["payment_intent"] == booking.payment_intent_id
    ]
    assert len(refunds_at_stripe) == 1
    # Without the key, a second identical request is a second refund, as asked.
    other = await refund_booking(db, **kw, clock=ctx.clock)  # type: ignore[arg-type]
    assert other.stripe_refund_id != first.stripe_refund_id


@pytest.mark.parametrize("bad", ["", "x" * 201, "has space", "semi;colon"])
async def test_bad_client_key_is_422_and_writes_nothing(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, bad: str
) -> None:
    booking, coach, _ = await _paid(db, ctx, emulator)
    with pytest.raises(InvalidInput):
        await refund_booking(
            db,
            booking_id=booking.id,
            actor=Actor.user(coach, "coach"),
            amount=100,
            gateway=ctx.gateway,
            clock=ctx.clock,
            client_key=bad,
        )
    assert await count(db, Refund) == 0


async def test_reason_with_control_characters_is_refused_before_stripe(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, _ = await _paid(db, ctx, emulator)
    with pytest.raises(InvalidInput):
        await refund_booking(
            db,
            booking_id=booking.id,
            actor=Actor.user(coach, "coach"),
            amount=100,
            reason="late\x00",
            gateway=ctx.gateway,
            clock=ctx.clock,
        )
    assert await count(db, Refund) == 0
    assert not [
        r
        for r in emulator.state.refunds.values()
        if r["payment_intent"] == booking.payment_intent_id
    ]
