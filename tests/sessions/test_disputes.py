from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from ledger.accounts import Kind, balance
from ledger.models import Earning
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


@pytest.mark.parametrize("outcome", ["won", "lost"])
async def test_dispute_opened_then_closed(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, outcome: str
) -> None:
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock)
    booking = await book_for(db, ctx, session.id, mentee)
    mark = event_mark(emulator)
    pay(emulator, booking)
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    charge = booking.charge_id
    mark = event_mark(emulator)
    dispute = emulator.control("POST", f"charges/{charge}/dispute", {})
    await deliver_new(db, ctx, emulator, mark)
    p = await platform_accounts(db)
    assert await coach_balance(db, coach, Kind.PENDING) == 0  # share taken
    assert await balance(db, p.disputes) == 2000
    assert await balance(db, p.processing) == 320 + 1500  # the dispute fee
    assert await trial_balance(db) == 0

    mark = event_mark(emulator)
    emulator.control("POST", f"disputes/{dispute['id']}/close", {"outcome": outcome})
    await deliver_new(db, ctx, emulator, mark)
    await deliver_new(db, ctx, emulator, mark)  # twice: nothing more
    assert await balance(db, p.disputes) == 0
    if outcome == "won":
        assert await coach_balance(db, coach, Kind.PENDING) == -8000
        assert await balance(db, p.processing) == 320
        assert await balance(db, p.losses) == 0
    else:
        assert await coach_balance(db, coach, Kind.PENDING) == 0
        assert await balance(db, p.losses) == 2000
        assert await balance(db, p.fees) == -2000
    assert await trial_balance(db) == 0


async def test_dispute_inquiry_moves_no_money_until_it_escalates(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    """An inquiry (status warning_*) withdraws nothing at Stripe; warning_closed returns nothing."""
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    p = await platform_accounts(db)
    stripe_before = await balance(db, p.stripe)

    mark = event_mark(emulator)
    closed = emulator.control("POST", f"charges/{booking.charge_id}/dispute", {"inquiry": True})
    emulator.control("POST", f"disputes/{closed['id']}/close", {"outcome": "warning_closed"})
    await deliver_new(db, ctx, emulator, mark)
    assert await balance(db, p.stripe) == stripe_before
    assert await balance(db, p.disputes) == 0
    assert await coach_balance(db, coach, Kind.PENDING) == -8000
    earning = (
        await db.execute(select(Earning).where(Earning.booking_id == booking.id))
    ).scalar_one()
    assert earning.reduced_before_release == 0

    # Another booking's inquiry escalates: Stripe withdraws the funds now.
    other, other_coach, _ = await paid_booking(db, ctx, emulator)
    mark = event_mark(emulator)
    inquiry = emulator.control("POST", f"charges/{other.charge_id}/dispute", {"inquiry": True})
    await deliver_new(db, ctx, emulator, mark)
    assert await coach_balance(db, other_coach, Kind.PENDING) == -8000
    stripe_before = await balance(db, p.stripe)
    mark = event_mark(emulator)
    emulator.control("POST", f"disputes/{inquiry['id']}/escalate")
    events = await deliver_new(db, ctx, emulator, mark)
    assert "charge.dispute.funds_withdrawn" in [e.type for e in events]
    assert await balance(db, p.stripe) == stripe_before - 10000 - 1500
    assert await balance(db, p.disputes) == 2000
    assert await coach_balance(db, other_coach, Kind.PENDING) == 0
    assert await trial_balance(db) == 0


@pytest.mark.parametrize("outcome", ["won", "lost"])
async def test_a_full_charge_dispute_after_a_partial_refund(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, outcome: str
) -> None:
    """Stripe withdraws the whole charge; the coach gives back only what they still hold."""
    from core.stripe_types import Dispute
    from core.stripe_types import Refund as StripeRefund
    from sessions.audit import Actor
    from sessions.disputes import close_dispute, open_dispute
    from sessions.refund_apply import apply_refund

    booking, coach, _ = await paid_booking(db, ctx, emulator)  # 10000, coach share 8000
    now = ctx.clock.now()
    refund = StripeRefund(
        id="re_part", amount=4000, currency="usd", charge_id=booking.charge_id,
        payment_intent_id=booking.payment_intent_id, status="succeeded", metadata={},
        failure_reason=None,
    )  # fmt: skip
    await apply_refund(db, booking, refund, source="stripe", actor=Actor.stripe(), now=now)
    assert await coach_balance(db, coach, Kind.PENDING) == -4800
    p = await platform_accounts(db)
    stripe_before = await balance(db, p.stripe)

    def dispute(status: str) -> Dispute:
        return Dispute(
            id="du_full", amount=10000, currency="usd", status=status,
            payment_intent_id=booking.payment_intent_id, charge_id=booking.charge_id,
            fee=1500, fee_returned=1500 if status == "won" else 0,
        )  # fmt: skip

    await open_dispute(db, booking.id, dispute("needs_response"), now=now)
    assert await balance(db, p.stripe) == stripe_before - 10000 - 1500
    assert await coach_balance(db, coach, Kind.PENDING) == 0  # never above what it held
    assert await balance(db, p.disputes) == 10000 - 4800
    assert await trial_balance(db) == 0

    await close_dispute(db, booking.id, dispute(outcome), now=now)
    assert await balance(db, p.disputes) == 0
    if outcome == "won":
        assert await coach_balance(db, coach, Kind.PENDING) == -4800
        assert await balance(db, p.stripe) == stripe_before
    else:
        assert await coach_balance(db, coach, Kind.PENDING) == 0
        assert await balance(db, p.losses) == 10000 - 4800
    assert await trial_balance(db) == 0
