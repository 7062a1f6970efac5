"""sessions.attention: refunds that failed or were refused stay listed until made good."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from sessions.attention import refunds_needing_attention
from sessions.audit import Actor
from sessions.cancellation import bookings_owed, cancel_session, settle_booking
from sessions.models import Booking, Refund
from sessions.refunds import refund_booking
from tests.sessions.helpers import (
    deliver_new,
    event_mark,
    make_user,
    paid_booking,
    refusing_refunds,
    trial_balance,
)


async def _fail_at_stripe(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, row: Refund
) -> None:
    """The card network returns the refund (the emulator's refund.updated + refund.failed)."""
    mark = event_mark(emulator)
    emulator.control("POST", f"refunds/{row.stripe_refund_id}/fail")
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(row)
    assert row.status == "failed"


async def _cancel(db: AsyncSession, ctx: HandlerContext, booking: Booking, coach: int) -> None:
    session_id = booking.coaching_session_id
    await cancel_session(
        db, session_id=session_id, actor=Actor.user(coach, "coach"), clock=ctx.clock
    )


async def _refuse(db: AsyncSession, ctx: HandlerContext, booking: Booking) -> str:
    """The settle job meets Stripe refusing the cancellation's refund."""
    refusing = refusing_refunds(ctx.gateway)
    return await settle_booking(db, booking_id=booking.id, gateway=refusing, clock=ctx.clock)  # type: ignore[arg-type]


async def _refund(db: AsyncSession, ctx: HandlerContext, booking: Booking, **kw: Any) -> Refund:
    admin = await make_user(db, "admin", ctx.clock.now())
    return await refund_booking(
        db, booking_id=booking.id, actor=Actor.user(admin, "admin"), gateway=ctx.gateway,
        clock=ctx.clock, **kw,
    )  # fmt: skip


async def test_a_failed_refund_is_listed_until_a_later_refund_goes_through(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, mentee = await paid_booking(db, ctx, emulator)
    assert await refunds_needing_attention(db) == []
    row = await _refund(db, ctx, booking, amount=3000, reason="late")
    await _fail_at_stripe(db, ctx, emulator, row)
    [item] = await refunds_needing_attention(db)
    assert (item.kind, item.booking_id, item.refund_id, item.amount) == (
        "refund_failed", booking.id, row.id, 3000,
    )  # fmt: skip
    assert (item.coach_id, item.mentee_id, item.paid, item.amount_refunded) == (
        coach, mentee, 10000, 0,
    )  # fmt: skip
    assert item.stripe_refund_id == row.stripe_refund_id and not item.retried_automatically
    # A person refunds again; once that refund has not failed, nothing is left.
    await _refund(db, ctx, booking, amount=3000)
    assert await refunds_needing_attention(db) == []
    assert await trial_balance(db) == 0


async def test_a_refused_cancellation_refund_is_listed_with_stripes_reason(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    await _cancel(db, ctx, booking, coach)
    assert await _refuse(db, ctx, booking) == "refused"
    [item] = await refunds_needing_attention(db)
    assert (item.kind, item.amount, item.session_status) == ("refund_refused", 10000, "cancelled")
    assert item.detail is not None and "disputed" in item.detail
    assert item.refund_id is None and not item.retried_automatically
    await _refund(db, ctx, booking)  # in full, by a person
    assert await refunds_needing_attention(db) == []


async def test_a_failed_cancellation_refund_waits_for_a_person(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    """An automatic refund that fails is the mentee's money, not the coach's again
    (sessions/refund_failures.py): the settle job does not retry it, a person must."""
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    await _cancel(db, ctx, booking, coach)
    outcome = await settle_booking(db, booking_id=booking.id, gateway=ctx.gateway, clock=ctx.clock)
    assert outcome == "refunded"
    row = (await db.execute(select(Refund))).scalar_one()
    await _fail_at_stripe(db, ctx, emulator, row)
    assert await bookings_owed(db, limit=10) == []
    [item] = await refunds_needing_attention(db)
    assert (item.kind, item.refund_id, item.amount) == ("refund_failed", row.id, 10000)
    assert not item.retried_automatically


async def test_pages_cover_every_item_once_newest_first(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    refunds = []
    for n in range(3):
        booking, _, _ = await paid_booking(db, ctx, emulator)
        row = await _refund(db, ctx, booking, amount=1000 + n)
        await _fail_at_stripe(db, ctx, emulator, row)
        refunds.append(row.id)
        ctx.clock.advance(timedelta(minutes=1))
    seen, before = [], None
    while True:
        page = await refunds_needing_attention(db, limit=2, before=before)
        if not page:
            break
        seen += [i.refund_id for i in page]
        before = page[-1].cursor
    assert seen == refunds[::-1]


async def test_a_failed_refund_of_a_cancelled_session_is_left_to_its_settle_job(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    row = await _refund(db, ctx, booking, amount=3000)
    await _fail_at_stripe(db, ctx, emulator, row)
    await _cancel(db, ctx, booking, coach)
    [item] = await refunds_needing_attention(db)
    assert item.refund_id == row.id and item.retried_automatically
    outcome = await settle_booking(db, booking_id=booking.id, gateway=ctx.gateway, clock=ctx.clock)
    assert outcome == "refunded"  # the whole booking, by the job's own refund
    assert await refunds_needing_attention(db) == []


async def test_a_later_smaller_refund_does_not_make_a_failed_one_good(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, _, _ = await paid_booking(db, ctx, emulator)
    first = await _refund(db, ctx, booking, amount=3000)
    await _refund(db, ctx, booking, amount=2000)
    ctx.clock.advance(timedelta(days=3))
    await _fail_at_stripe(db, ctx, emulator, first)  # the mentee is 3000 short
    [item] = await refunds_needing_attention(db)
    assert (item.refund_id, item.amount, item.since) == (first.id, 3000, ctx.clock.now())
    await _refund(db, ctx, booking, amount=1000)  # not enough yet
    assert len(await refunds_needing_attention(db)) == 1
    await _refund(db, ctx, booking, amount=2000)
    assert await refunds_needing_attention(db) == []


async def test_a_refused_refund_stays_listed_until_the_booking_is_refunded_in_full(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    booking, coach, _ = await paid_booking(db, ctx, emulator)
    await _cancel(db, ctx, booking, coach)
    await _refuse(db, ctx, booking)
    await _refund(db, ctx, booking, amount=100)
    [item] = await refunds_needing_attention(db)
    assert (item.kind, item.amount) == ("refund_refused", 9900)


async def test_a_full_page_still_points_to_the_next(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, monkeypatch: Any
) -> None:
    from sessions import attention

    monkeypatch.setattr(attention, "MAX_PAGE", 2)
    for _ in range(3):
        booking, _, _ = await paid_booking(db, ctx, emulator)
        await _fail_at_stripe(db, ctx, emulator, await _refund(db, ctx, booking, amount=500))
    # The route asks for MAX_PAGE + 1 to learn whether another page follows.
    assert len(await refunds_needing_attention(db, limit=attention.MAX_PAGE + 1)) == 3
    assert len(await refunds_needing_attention(db, limit=99)) == 3
