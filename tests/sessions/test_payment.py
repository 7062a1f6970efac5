from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from core.stripe_types import BalanceTransaction
from emulator.server import EmulatorServer
from ledger.accounts import Kind, balance
from ledger.models import Earning, LedgerTransaction
from ledger.reconciliation import ledger_side, reconcile
from sessions.models import BookingEvent, Refund
from tests.sessions.helpers import (
    book_for,
    coach_balance,
    deliver_new,
    event_mark,
    make_coach,
    make_session,
    make_user,
    paid_booking,
    pay,
    platform_accounts,
    trial_balance,
)


async def test_book_pay_webhook_posts_split_fee_and_earning(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now, hold_hours=48)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock, price=10000)
    booking = await book_for(db, ctx, session.id, mentee)
    assert booking.status == "pending" and booking.checkout_url
    cs = emulator.state.checkout_sessions[booking.checkout_session_id]
    assert cs["metadata"]["booking_id"] == str(booking.id)
    assert cs["amount_total"] == 10000

    mark = event_mark(emulator)
    pay(emulator, booking)
    await deliver_new(db, ctx, emulator, mark)

    await db.refresh(booking)
    assert booking.status == "paid" and booking.payment_intent_id
    p = await platform_accounts(db)
    assert await balance(db, p.fees) == -2000
    assert await coach_balance(db, coach, Kind.PENDING) == -8000
    # Stripe's fee (2.9 % + 30 = 320) in its own transaction.
    assert await balance(db, p.processing) == 320
    assert await balance(db, p.stripe) == 10000 - 320
    assert await trial_balance(db) == 0
    types = (
        (
            await db.execute(
                select(LedgerTransaction.type).where(LedgerTransaction.booking_id == booking.id)
            )
        )
        .scalars()
        .all()
    )
    assert sorted(types) == ["processing_fee", "session_payment"]
    earning = (
        await db.execute(select(Earning).where(Earning.booking_id == booking.id))
    ).scalar_one()
    assert (earning.gross, earning.platform_fee, earning.amount) == (10000, 2000, 8000)
    assert earning.available_at == session.ends_at + timedelta(hours=48)
    audit = (
        await db.execute(
            select(BookingEvent.from_status, BookingEvent.to_status)
            .where(BookingEvent.booking_id == booking.id)
            .order_by(BookingEvent.id)
        )
    ).all()
    assert audit == [(None, "pending"), ("pending", "paid")]


async def test_expired_after_completed_keeps_paid(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock)
    booking = await book_for(db, ctx, session.id, mentee)
    mark = event_mark(emulator)
    pay(emulator, booking)
    events = await deliver_new(db, ctx, emulator, mark)
    # A forged/late "expired" for the same session: Stripe says complete, nothing changes.
    from core.stripe_types import StripeEvent

    expired = StripeEvent.from_dict(
        {**events[-1].raw, "id": "evt_fake_expired", "type": "checkout.session.expired"}
    )
    from tests.sessions.helpers import deliver

    await deliver(db, ctx, [expired])
    await db.refresh(booking)
    assert booking.status == "paid"


async def test_completed_after_expiry_refunds_automatically(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    """The mentee paid, but the booking was cancelled (expired here) before the event came."""
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock)
    booking = await book_for(db, ctx, session.id, mentee)
    booking.status = "cancelled"  # as after checkout.session.expired / a cancel
    await db.flush()
    mark = event_mark(emulator)
    pay(emulator, booking)
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    assert booking.status == "refunded"
    refund = (await db.execute(select(Refund).where(Refund.booking_id == booking.id))).scalar_one()
    assert refund.source == "auto" and refund.amount == 10000
    assert refund.stripe_refund_id in emulator.state.refunds
    p = await platform_accounts(db)
    assert await balance(db, p.fees) == 0
    assert await coach_balance(db, coach, Kind.PENDING) == 0
    assert await balance(db, p.stripe) == -320  # Stripe keeps its fee on a refund
    assert await trial_balance(db) == 0
    assert (
        await db.execute(select(Earning).where(Earning.booking_id == booking.id))
    ).scalar_one_or_none() is None
    causes = (
        (await db.execute(select(BookingEvent.cause).where(BookingEvent.booking_id == booking.id)))
        .scalars()
        .all()
    )
    assert "auto_refund:booking_cancelled" in causes


async def test_payment_posting_names_the_charge_so_a_zero_fee_payment_reconciles(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, _, _ = await paid_booking(db, ctx, emulator)
    assert booking.charge_id
    tx = (
        await db.execute(
            select(LedgerTransaction).where(
                LedgerTransaction.booking_id == booking.id,
                LedgerTransaction.type == "session_payment",
            )
        )
    ).scalar_one()
    assert tx.metadata_["charge_id"] == booking.charge_id
    assert tx.stripe_object_id == booking.charge_id
    assert tx.stripe_payment_intent_id == booking.payment_intent_id
    # A charge with no Stripe fee has no processing-fee posting to link through:
    # the payment itself must match the charge's balance transaction.
    bt = BalanceTransaction(
        id="txn_zero_fee",
        amount=10000,
        fee=0,
        net=10000,
        currency="usd",
        type="charge",
        source=booking.charge_id,
        status="available",
        available_on=0,
        created=0,
        reporting_category="charge",
    )
    side = [s for s in await ledger_side(db, start=None, end=None) if s.transaction_id == tx.id]
    result = reconcile([bt], side)
    assert [m.ledger_transaction_ids for m in result.matched] == [(tx.id,)]
