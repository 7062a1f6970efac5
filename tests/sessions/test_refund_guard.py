"""apply_refund refuses, never clips: a refund larger than what is left, or in another currency."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from core.stripe_types import Refund as StripeRefund
from emulator.server import EmulatorServer
from sessions.attention import refunds_needing_attention
from sessions.audit import Actor
from sessions.models import Booking, Refund
from sessions.refund_apply import apply_refund
from tests.sessions.helpers import paid_booking, trial_balance


def _refund(booking: Booking, rid: str, amount: int, currency: str = "usd") -> StripeRefund:
    return StripeRefund(
        id=rid,
        amount=amount,
        currency=currency,
        charge_id=booking.charge_id,
        payment_intent_id=booking.payment_intent_id,
        status="succeeded",
        metadata={},
        failure_reason=None,
    )


async def _apply(
    db: AsyncSession, ctx: HandlerContext, booking: Booking, r: StripeRefund
) -> object:
    return await apply_refund(
        db, booking, r, source="stripe", actor=Actor.stripe(), now=ctx.clock.now()
    )


async def _booked(db: AsyncSession, booking: Booking) -> int:
    total = await db.execute(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(Refund.booking_id == booking.id)
    )
    return int(total.scalar_one())


@pytest.mark.parametrize(
    ("amount", "currency", "why"),
    [(7001, "usd", "outside 1..7000"), (500, "eur", "currency eur")],
)
async def test_a_refund_that_does_not_fit_is_refused_and_listed(
    db: AsyncSession,
    ctx: HandlerContext,
    emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    amount: int,
    currency: str,
    why: str,
) -> None:
    booking, _, _ = await paid_booking(db, ctx, emulator)
    assert await _apply(db, ctx, booking, _refund(booking, "re_first", 3000)) is not None
    before = await trial_balance(db)
    odd = _refund(booking, "re_odd", amount, currency)
    with caplog.at_level(logging.ERROR, logger="sessions.refund_apply"):
        assert await _apply(db, ctx, booking, odd) is None
        assert await _apply(db, ctx, booking, odd) is None  # redelivered: listed once
    assert booking.amount_refunded == 3000 and booking.status == "partially_refunded"
    assert await _booked(db, booking) == 3000
    assert await trial_balance(db) == before == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "re_odd" in errors[0] and str(booking.id) in errors[0]
    items = [i for i in await refunds_needing_attention(db) if i.booking_id == booking.id]
    assert [(i.kind, i.stripe_refund_id, i.amount) for i in items] == [
        ("refund_unbooked", "re_odd", amount)
    ]
    assert items[0].detail is not None and why in items[0].detail


PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_REFUNDS = st.lists(
    st.tuples(st.integers(1, 12000), st.sampled_from(["usd", "usd", "eur", "USD"])),
    min_size=1,
    max_size=5,
)
_cache: dict[int, Booking] = {}


@PROPERTY
@given(pool=_REFUNDS, picks=st.lists(st.integers(0, 4), min_size=1, max_size=8))
async def test_booked_refunds_never_exceed_the_charge(
    db: AsyncSession,
    ctx: HandlerContext,
    emulator: EmulatorServer,
    pool: list[tuple[int, str]],
    picks: list[int],
) -> None:
    if id(db) not in _cache:
        _cache[id(db)] = (await paid_booking(db, ctx, emulator))[0]
    booking = _cache[id(db)]
    savepoint = await db.begin_nested()
    try:
        refunds = [_refund(booking, f"re_p{n}", a, c) for n, (a, c) in enumerate(pool)]
        remaining, seen = booking.amount, set()
        for pick in picks:
            r = refunds[pick % len(refunds)]
            fits = r.currency == "usd" and r.amount <= remaining and r.id not in seen
            row = await _apply(db, ctx, booking, r)
            assert (row is not None) == fits
            if fits:
                seen.add(r.id)
                remaining -= r.amount
        assert booking.amount_refunded == await _booked(db, booking) == booking.amount - remaining
        assert booking.amount_refunded <= booking.amount
        assert await trial_balance(db) == 0
    finally:
        await savepoint.rollback()
        await db.refresh(booking)
